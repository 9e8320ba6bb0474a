r"""Prints sampling throughput (images/s) of a trained run, or of a config's freshly initialised model.

  python tools/bench_sample.py --workdir runs/mnist_ddpm --sampler ddim --steps 50 [--batch 256] [--reps 2]
  python tools/bench_sample.py --config configs/diffusion/mnist_ddpm.py --config.data.dir=... --steps 50

The timed call is the same compiled function `artjax.sample` uses (the whole reverse chain in one
`lax.scan`); compile time is reported separately. Results are in experiments/README.md.
"""

import json
import time

import jax
from absl import flags, logging
from ml_collections import config_flags

from artjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (random weights; speed only).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run (its latest checkpoint).")
_BATCH = flags.DEFINE_integer("batch", 256, "Images per compiled call.")
_REPS = flags.DEFINE_integer("reps", 2, "Timed calls.")
_SAMPLER = flags.DEFINE_string("sampler", None, "Sampler option (diffusion: ddpm | ddim).")
_STEPS = flags.DEFINE_integer("steps", None, "Sampler steps option (diffusion).")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  import jax.numpy as jnp

  from artjax import methods
  from artjax.inference import Sampler

  if _WORKDIR.value:
    s = Sampler.from_workdir(_WORKDIR.value)
    config, method, params, model_state = s.config, s.method, s.params, s.model_state
  elif _CONFIG.value is not None:
    config = errors.checked_config(_CONFIG.value)
    method = methods.build(config)
    s, ch = config.data.image_size, config.data.channels
    batch = {"image": jnp.zeros((2, s, s, ch)), "label": jnp.zeros((2,), jnp.int32)}
    params, model_state = method.init(jax.random.key(0), batch)
  else:
    raise errors.ArtjaxError("give --workdir (a trained run) or --config")
  options = {k: v for k, v in (("sampler", _SAMPLER.value), ("steps", _STEPS.value)) if v is not None}
  options = method.check_options(options)
  fn = jax.jit(lambda p, ms, rng: method.sample(p, ms, rng, _BATCH.value, **options))
  t = time.perf_counter()
  jax.block_until_ready(fn(params, model_state, jax.random.key(0)))
  first = time.perf_counter() - t
  t = time.perf_counter()
  for i in range(_REPS.value):
    jax.block_until_ready(fn(params, model_state, jax.random.key(i + 1)))
  sec = (time.perf_counter() - t) / _REPS.value
  out = {"method": config.method.name, "options": options, "batch": _BATCH.value,
         "compile_plus_first_sec": round(first, 2), "sec_per_call": round(sec, 3),
         "images_per_sec": round(_BATCH.value / sec, 2), "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}
  print(json.dumps(out))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(out, f)


if __name__ == "__main__":
  errors.run(main)
