"""CLI: sample from a trained checkpoint.

  python -m artjax.sample --workdir DIR [--step N] [--num 64] [--seed 0] --out samples.png|samples.npy
      [--label 8] [--guidance 3.0] [--sampler ddim --steps 50]     # options the family supports
      [--interpolate 10]                                           # --num rows of 10-step latent walks

Restores only the model item (params / EMA params / non-trained collections) and the config saved
with the checkpoint; the same seed gives the same samples.
"""

import pathlib

from absl import flags, logging

from artjax import errors

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_NUM = flags.DEFINE_integer("num", 64, "Number of samples (rows, with --interpolate).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BATCH = flags.DEFINE_integer("batch", 256, "Samples generated per compiled call.")
_EMA = flags.DEFINE_bool("ema", True, "Use the EMA params when the checkpoint has them (--noema: raw params).")
_OUT = flags.DEFINE_string("out", None, "Output file; its suffix picks the format (.png grid, .npy array).")
_LABEL = flags.DEFINE_integer("label", None, "Class to generate (class-conditional models), e.g. 8 for eights.")
_GUIDANCE = flags.DEFINE_float("guidance", None, "Classifier-free guidance scale (0: unconditional, 1: conditional).")
_SAMPLER = flags.DEFINE_string("sampler", None, "Sampler of the family, e.g. ddpm | ddim for diffusion.")
_SAMPLE_STEPS = flags.DEFINE_integer("steps", None, "Sampler steps (diffusion).")
_ETA = flags.DEFINE_float("eta", None, "DDIM eta (0: deterministic; 1: DDPM-like noise).")
_INTERPOLATE = flags.DEFINE_integer(
    "interpolate", 0, "If > 1: a grid of --num rows, each this many slerp steps between two latents.")
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


def generate(method, params, model_state, num: int, seed: int, batch: int = 256, **options):
  """`num` samples in chunks of `batch` (one compiled function; the last chunk is cut, not recompiled)."""
  import jax
  import numpy as np

  if num <= 0:
    raise errors.ArtjaxError(f"--num must be positive, got {num}")
  method.check_options(options)
  batch = min(batch, num)
  fn = jax.jit(lambda p, ms, rng: method.sample(p, ms, rng, batch, **options))
  key = jax.random.key(seed)
  chunks = [np.asarray(fn(params, model_state, jax.random.fold_in(key, i))) for i in range(-(-num // batch))]
  return np.concatenate(chunks)[:num]


def interpolate(method, params, model_state, rows: int, cols: int, seed: int, **options):
  """(rows * cols) outputs: row r walks (slerp) from one prior draw to another in `cols` steps.

  Every image is decoded with the same decode key, so only the latent changes along a row (use a
  deterministic sampler, e.g. DDIM, for diffusion).
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  from artjax.methods.base import slerp

  if rows <= 0 or cols < 2:
    raise errors.ArtjaxError(f"interpolation needs --num >= 1 rows and --interpolate >= 2 steps, got {rows}, {cols}")
  method.check_options(options)
  key = jax.random.key(seed)

  def fn(p, ms):
    a, b = method.prior(jax.random.fold_in(key, 0), rows), method.prior(jax.random.fold_in(key, 1), rows)
    t = jnp.linspace(0.0, 1.0, cols)
    z = jax.vmap(lambda ti: slerp(a, b, ti))(t)           # (cols, rows, ...)
    z = jnp.swapaxes(z, 0, 1).reshape((rows * cols,) + a.shape[1:])
    return method.decode(p, ms, z, jax.random.fold_in(key, 2), **options)

  return np.asarray(jax.jit(fn)(params, model_state))


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # Orbax warns about read-only managers; not the user's concern.
  from artjax import outputs

  out = pathlib.Path(_OUT.value)
  config, method, params, model_state = load(_WORKDIR.value, _STEP.value, _EMA.value)
  options = {name: flag.value for name, flag in (("label", _LABEL), ("guidance", _GUIDANCE), ("sampler", _SAMPLER),
                                                 ("steps", _SAMPLE_STEPS), ("eta", _ETA)) if flag.value is not None}
  if _INTERPOLATE.value:
    samples = interpolate(method, params, model_state, _NUM.value, _INTERPOLATE.value, _SEED.value, **options)
    path = outputs.write(method.output_kind, samples, out, config, ncol=_INTERPOLATE.value)
  else:
    samples = generate(method, params, model_state, _NUM.value, _SEED.value, _BATCH.value, **options)
    path = outputs.write(method.output_kind, samples, out, config)
  print(f"wrote {len(samples)} samples to {path}")


if __name__ == "__main__":
  errors.run(main)
