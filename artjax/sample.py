"""CLI: sample from a trained checkpoint.

  python -m artjax.sample --workdir DIR [--step N] [--num 64] [--seed 0] --out samples.png|samples.npy

Restores only the model item (params / EMA params / non-trained collections) and the config saved
with the checkpoint; the same seed gives the same samples.
"""

import pathlib

from absl import flags, logging

from artjax import errors

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_NUM = flags.DEFINE_integer("num", 64, "Number of samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BATCH = flags.DEFINE_integer("batch", 256, "Samples generated per compiled call.")
_EMA = flags.DEFINE_bool("ema", True, "Use the EMA params when the checkpoint has them (--noema: raw params).")
_OUT = flags.DEFINE_string("out", None, "Output file; its suffix picks the format (.png grid, .npy array).")
flags.mark_flags_as_required(["workdir", "out"])


def load(workdir, step=None, ema=True):
  """(config, method, params, model_state) of a checkpoint: all that sampling needs."""
  from artjax import methods
  from artjax.train.checkpoint import open_for_reading
  from artjax.train.state import sampling_params

  ckpt = open_for_reading(workdir)
  try:
    config, items = ckpt.restore_model(step)
  finally:
    ckpt.close()
  params = sampling_params(items["params"], items["ema_params"] if ema else None)
  return config, methods.build(config), params, items["model_state"]


def generate(method, params, model_state, num: int, seed: int, batch: int = 256):
  """`num` samples in chunks of `batch` (one compiled function; the last chunk is cut, not recompiled)."""
  import jax
  import numpy as np

  if num <= 0:
    raise errors.ArtjaxError(f"--num must be positive, got {num}")
  batch = min(batch, num)
  fn = jax.jit(lambda p, ms, rng: method.sample(p, ms, rng, batch))
  key = jax.random.key(seed)
  chunks = [np.asarray(fn(params, model_state, jax.random.fold_in(key, i))) for i in range(-(-num // batch))]
  return np.concatenate(chunks)[:num]


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # Orbax warns about read-only managers; not the user's concern.
  from artjax import outputs

  out = pathlib.Path(_OUT.value)
  config, method, params, model_state = load(_WORKDIR.value, _STEP.value, _EMA.value)
  samples = generate(method, params, model_state, _NUM.value, _SEED.value, _BATCH.value)
  path = outputs.write(method.output_kind, samples, out, config)
  print(f"wrote {_NUM.value} samples to {path}")


if __name__ == "__main__":
  errors.run(main)
