r"""How fast a config's train step runs, and how close that is to the hardware.

  python tools/bench_train.py --config configs/gan/mnist_dcgan.py --config.data.dir=/path/to/mnist \
      [--steps 30] [--profile /tmp/trace] [--json out.json] [--config.model.dtype=bfloat16]

Prints one JSON line:
  compile_sec, ms_per_step, steps_per_sec, examples_per_sec (tokens_per_sec for language models);
  flops_per_step: XLA's cost analysis of the compiled step (all devices; forward, backward, optimizer);
  model_flops_per_step (Transformers): 6 N + 6 L H Q T per token x tokens (Kaplan et al. 2020 / PaLM,
    Chowdhery et al. 2022, appendix B; N = parameters without position embeddings; the attention term
    12 L H Q T halved because causal attention computes half the score matrix);
  mfu: model FLOPs (XLA's count where there is no formula) per second / (devices x peak FLOP/s). The
    peak is the device's dense bf16 figure from PEAK_TFLOPS (H100/H200 989, not the 2x sparse figure);
    on a CPU it is a float32 matmul measured here once per run (`--cpu_peak_gflops` to give one);
  memory (per device, bytes): XLA's memory analysis of the compiled step (arguments + outputs - donated
    aliases + temporaries) and, on GPUs/TPUs, the allocator's peak after the timed steps;
  loader_batches_per_sec: the input pipeline alone, to show it is not the bottleneck.
`--profile DIR` writes a profiler trace of 5 steps (TensorBoard's profile plugin or Perfetto read it).
Figures for reference machines are in experiments/README.md.
"""

import json
import tempfile
import time

import jax
import jax.numpy as jnp
from absl import flags, logging
from ml_collections import config_flags

from artjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")
_PROFILE = flags.DEFINE_string("profile", None, "Write a profiler trace of 5 steps to this directory.")
_CPU_PEAK = flags.DEFINE_float("cpu_peak_gflops", 0.0, "CPU peak in GFLOP/s (default: measured).")
flags.mark_flags_as_required(["config"])

# Dense bf16 peak per chip, TFLOP/s (vendor data sheets; the sparse figures are twice these).
PEAK_TFLOPS = {
    "H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10G": 125.0,
    "TPU v6": 918.0, "TPU v5p": 459.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v4": 275.0,
}


def device_peak_flops(device, cpu_peak_gflops: float = 0.0) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the figure comes from)."""
  if device.platform == "cpu":
    if cpu_peak_gflops:
      return cpu_peak_gflops * 1e9, "given"
    return measure_cpu_matmul_peak(), "measured float32 matmul"
  for key, tflops in PEAK_TFLOPS.items():
    if key.lower() in device.device_kind.lower():
      return tflops * 1e12, f"table ({key} dense bf16)"
  return float("nan"), f"unknown device kind {device.device_kind!r}"


def measure_cpu_matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of the best of `repeats` float32 (n, n) @ (n, n) products on the default CPU device."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best


def transformer_flops_per_token(model_cfg, num_params: int, seq_len: int) -> float:
  """Training FLOPs per token of a decoder-only Transformer: 6 N + 6 L H Q T (see the module docstring)."""
  layers, width = int(model_cfg.num_layers), int(model_cfg.emb_dim)
  n = num_params - (int(model_cfg.max_len) * width if model_cfg.get("positions", "learned") == "learned" else 0)
  return 6 * n + 6 * layers * width * seq_len  # H * Q = width


def xla_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float((cost or {}).get("flops", float("nan")))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from artjax.train.loop import Trainer, memory_needed

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

  if _PROFILE.value:
    with jax.profiler.trace(_PROFILE.value):
      for i in range(5):
        state, metrics = compiled(state, batches[i % 4])
      jax.block_until_ready((state, metrics))

  n = 20
  t = time.perf_counter()
  for i, _ in enumerate(trainer.loader.iterate(100, 100 + n)):
    pass
  loader_sec = (time.perf_counter() - t) / n

  device = jax.devices()[0]
  flops = xla_flops(compiled)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  result = {
      "backend": jax.default_backend(), "device": device.device_kind, "devices": jax.device_count(),
      "jax": jax.__version__, "model": config.model.name, "dtype": config.model.get("dtype", "float32"),
      "upsample": config.model.get("upsample"), "batch_size": config.batch_size,
      "grad_accum_steps": int(config.get("grad_accum_steps", 1)), "remat": config.model.get("remat"),
      "mesh": dict(trainer.mesh.shape), "params": int(num_params),
      "compile_sec": round(compile_sec, 2), "ms_per_step": round(step_sec * 1e3, 2),
      "steps_per_sec": round(1 / step_sec, 3), "examples_per_sec": round(config.batch_size / step_sec, 1),
      "flops_per_step": flops, "achieved_tflops_per_sec": round(flops / step_sec / 1e12, 4),
      "loader_batches_per_sec": round(1 / loader_sec, 1),
  }
  model_flops = flops
  seq_len = config.data.get("seq_len")
  if seq_len:  # language models: throughput in tokens
    tokens = config.batch_size * seq_len
    result["tokens_per_sec"] = round(tokens / step_sec, 1)
    if config.model.name == "transformer" and not config.model.get("input_size", 0):
      model_flops = transformer_flops_per_token(config.model, num_params, seq_len) * tokens
      result["model_flops_per_step"] = model_flops
  peak, peak_source = device_peak_flops(device, _CPU_PEAK.value)
  result.update({"peak_tflops_per_device": round(peak / 1e12, 4), "peak_source": peak_source,
                 "mfu": round(model_flops / step_sec / (peak * jax.device_count()), 4)})
  memory = memory_needed(compiled)
  if memory:
    result["memory_analysis_bytes"] = memory
  try:
    stats = device.memory_stats() or {}
  except Exception:  # CPUs may not implement it
    stats = {}
  if "peak_bytes_in_use" in stats:
    result["allocator_peak_bytes"] = int(stats["peak_bytes_in_use"])
  print(json.dumps(result))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  errors.run(main)
