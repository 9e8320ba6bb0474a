"""Preprocessing and the deterministic, resumable, per-process batch loader.

Batch k of a run is a pure function of (seed, k): the global example order is a fresh permutation per
epoch seeded by (seed, epoch), and global batch k holds positions [k*B, (k+1)*B) of that endless
sequence. Process p of P loads rows [p*B/P, (p+1)*B/P) of it, so the global batch (rows in order) is
the same for any number of processes, and restarting at step k reproduces batch k exactly.
"""

import grain
import jax
import numpy as np
from PIL import Image

from artjax.errors import ArtjaxError


def make_preprocess(data_cfg, source=None):
  """Returns `fn(example, seed) -> example`: `source.preprocess` where the source defines it, else the
  image preprocessing (raw uint8 images to float32 in `value_range`; other examples pass through).

  `seed` is anything `np.random.default_rng` takes; a Generator is only built if an augmentation needs one.
  """
  if source is not None and hasattr(source, "preprocess"):
    return source.preprocess
  size = data_cfg.get("image_size", None)
  channels = data_cfg.get("channels", None)
  lo, hi = data_cfg.get("value_range", (-1.0, 1.0))
  flip = data_cfg.get("random_flip", False)
  background = tuple(data_cfg.get("background", (255, 255, 255)))

  def fn(ex, seed):
    if "image" not in ex:  # e.g. token sequences: sources already yield model-ready arrays
      return ex
    img = np.asarray(ex["image"])
    if img.ndim == 2:
      img = img[..., None]
    if img.shape[-1] in (2, 4):  # alpha: composite onto the background colour.
      alpha = img[..., -1:].astype(np.float32) / 255.0
      color = img[..., :-1].astype(np.float32)
      bg = np.asarray(background[:color.shape[-1]], np.float32)
      img = np.round(color * alpha + bg * (1.0 - alpha)).astype(np.uint8)
    if channels == 1 and img.shape[-1] == 3:
      img = np.asarray(Image.fromarray(img).convert("L"))[..., None]
    elif channels == 3 and img.shape[-1] == 1:
      img = np.repeat(img, 3, axis=-1)
    h, w = img.shape[:2]
    if size and h != w:  # centre-crop to a square rather than squash
      m = min(h, w)
      img = img[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]
    if size and img.shape[:2] != (size, size):
      pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
      pil = pil.resize((size, size), Image.BICUBIC if size > img.shape[0] else Image.LANCZOS)
      img = np.asarray(pil).reshape(size, size, -1)
    x = img.astype(np.float32) * ((hi - lo) / 255.0) + lo
    if flip and np.random.default_rng(seed).random() < 0.5:
      x = x[:, ::-1]
    out = {"image": np.ascontiguousarray(x)}
    if "label" in ex:
      out["label"] = np.int32(ex["label"])
    return out

  return fn


class Loader:
  """Yields this process's share of each global batch, starting at any step."""

  def __init__(self, source, preprocess, global_batch: int, seed: int, *, shuffle: bool = True,
               process_index: int | None = None, process_count: int | None = None,
               num_threads: int = 2, prefetch: int = 4):
    self.source = source
    self.preprocess = preprocess
    self.seed = seed
    self.shuffle = shuffle
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    if global_batch % self.process_count:
      raise ArtjaxError(f"batch_size {global_batch} is not divisible by the {self.process_count} processes")
    self.global_batch = global_batch
    self.local_batch = global_batch // self.process_count
    self._orders = {}
    self.num_threads = num_threads
    self.prefetch = prefetch
    if len(source) == 0:
      raise ArtjaxError(f"data source {source!r} is empty")

  def _epoch_order(self, epoch: int) -> np.ndarray:
    if epoch not in self._orders:
      n = len(self.source)
      order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
      self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}  # keep ~2 epochs
      self._orders[epoch] = order
    return self._orders[epoch]

  def global_positions(self, step: int) -> np.ndarray:
    """Positions (in the endless epoch sequence) of this process's rows of global batch `step`."""
    start = step * self.global_batch + self.process_index * self.local_batch
    return np.arange(start, start + self.local_batch, dtype=np.int64)

  def indices(self, step: int) -> np.ndarray:
    """Source indices of this process's rows of global batch `step`."""
    n = len(self.source)
    pos = self.global_positions(step)
    return np.array([self._epoch_order(int(p // n))[p % n] for p in pos], np.int64)

  def batch(self, step: int) -> dict:
    """This process's rows of global batch `step`, preprocessed and stacked."""
    rows = []
    for pos, idx in zip(self.global_positions(step), self.indices(step)):
      # Per-example seed from (seed, position): augmentation is independent of batching and threads.
      rows.append(self.preprocess(self.source[int(idx)], (self.seed, 1, int(pos))))
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

  def iterate(self, start_step: int, end_step: int):
    """Batches for steps [start_step, end_step), loaded ahead in background threads by grain."""
    ds = grain.MapDataset.range(start_step, end_step).map(self.batch)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=self.num_threads,
                                                     prefetch_buffer_size=self.prefetch)))


def to_global(local_batch: dict, sharding, global_batch: int) -> dict:
  """Assembles each process's rows into global arrays of `global_batch` rows along the mesh's data axis."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x, (global_batch,) + x.shape[1:]), local_batch)
