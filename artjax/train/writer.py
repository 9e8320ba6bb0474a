"""Metric logging on process 0: JSON lines, TensorBoard event files and a loss-curve PNG."""

import json

import jax
import numpy as np

from artjax.checkpoint import workdir_path


class MetricWriter:
  """Writes scalars to WORKDIR/metrics.jsonl and WORKDIR/tensorboard/ (no-op on other processes)."""

  def __init__(self, workdir):
    self.workdir = workdir_path(workdir)  # local, or gs://... through etils.epath
    self.active = jax.process_index() == 0
    self._tb = None
    if self.active:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(str(self.workdir / "tensorboard"))
      self._file = (self.workdir / "metrics.jsonl").open("a")

  def write(self, step: int, scalars: dict):
    if not self.active:
      return
    scalars = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._file.write(json.dumps({"step": step, **scalars}) + "\n")
    self._file.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)

  def close(self):
    if self.active:
      self._file.close()
      self._tb.close()
      plot_metrics(self.workdir / "metrics.jsonl", self.workdir / "metrics.png")


def plot_metrics(jsonl_path, png_path, skip=("steps_per_sec", "examples_per_sec", "compile_sec")):
  """One small panel per scalar against step."""
  with workdir_path(jsonl_path).open() as f:
    rows = [json.loads(line) for line in f if line.strip()]
  # After a kill -9 and resume, steps since the last checkpoint are logged twice: keep the latest.
  rows = list({(r["step"], tuple(sorted(r))): r for r in rows}.values())
  rows.sort(key=lambda r: r["step"])
  keys = sorted({k for r in rows for k in r if k != "step" and k not in skip})
  if not rows or not keys:
    return
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  cols = min(3, len(keys))
  nrows = (len(keys) + cols - 1) // cols
  fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.6 * nrows), squeeze=False)
  for ax, k in zip(axes.flat, keys):
    pts = [(r["step"], r[k]) for r in rows if k in r]
    ax.plot(*zip(*pts), lw=1)
    ax.set_title(k, fontsize=9)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  fig.tight_layout()
  with workdir_path(png_path).open("wb") as f:
    fig.savefig(f, format="png", dpi=90)
  plt.close(fig)
