r"""Prints compile time, steady-state steps/s and examples/s of a config's train step on this backend.

  python tools/bench_train.py --config configs/gan/mnist_dcgan.py --config.data.dir=/path/to/mnist \
      [--steps 30] [--config.model.upsample=transpose]

Also times the input pipeline alone (batches/s), to show it is not the bottleneck. Results for
reference machines are in experiments/README.md.
"""

import json
import tempfile
import time

import jax
from absl import flags, logging
from ml_collections import config_flags

from artjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")
flags.mark_flags_as_required(["config"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from artjax.train.loop import Trainer

  config = errors.checked_config(_CONFIG.value)
  trainer = Trainer(config, tempfile.mkdtemp())
  state = trainer.init_state()
  compiled, compile_sec = trainer.compile(state)
  batches = [trainer.global_batch(i) for i in range(4)]
  for i in range(_WARMUP.value):
    state, metrics = compiled(state, batches[i % 4])
  jax.block_until_ready(state)
  t = time.perf_counter()
  for i in range(_STEPS.value):
    state, metrics = compiled(state, batches[i % 4])
  jax.block_until_ready((state, metrics))
  step_sec = (time.perf_counter() - t) / _STEPS.value

  n = 20
  t = time.perf_counter()
  for i, _ in enumerate(trainer.loader.iterate(100, 100 + n)):
    pass
  loader_sec = (time.perf_counter() - t) / n

  flops = compiled.cost_analysis()
  flops = (flops[0] if isinstance(flops, list) else flops or {}).get("flops", float("nan"))
  result = {
      "backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
      "model": config.model.name, "upsample": config.model.get("upsample"), "batch_size": config.batch_size,
      "compile_sec": round(compile_sec, 2), "ms_per_step": round(step_sec * 1e3, 1),
      "steps_per_sec": round(1 / step_sec, 2), "examples_per_sec": round(config.batch_size / step_sec, 1),
      "gflops_per_step": round(flops / 1e9, 1), "achieved_gflops_per_sec": round(flops / 1e9 / step_sec, 1),
      "loader_batches_per_sec": round(1 / loader_sec, 1),
  }
  if config.data.get("seq_len"):  # language models: training throughput in tokens
    result["tokens_per_sec"] = round(config.batch_size * config.data.seq_len / step_sec, 1)
  print(json.dumps(result))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  errors.run(main)
