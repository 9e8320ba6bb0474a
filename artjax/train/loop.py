"""The one training loop every family uses: data -> sharded jit step -> logs, samples, checkpoints."""

import contextlib
import functools
import json
import signal
import threading
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta
from tqdm.auto import tqdm

from artjax import data, encoders, methods
from artjax.errors import ArtjaxError, first_line
from artjax.eval import split as split_eval
from artjax.train import sharding
from artjax.inference import Sampler, prefer_ema
from artjax.checkpoint import workdir_path
from artjax.train.checkpoint import Checkpointer, config_to_dict
from artjax.train.state import create, create_boxed, sampling_params, train_step
from artjax.train.writer import MetricWriter
from artjax.utils.config import with_absolute_data_paths

REQUIRED = ("seed", "total_steps", "batch_size", "data", "model", "method", "optimizer")


class Preemption:
  """Records SIGTERM so the loop can save and exit cleanly at the next step boundary."""

  def __init__(self):
    self.requested = False
    self.agreed = False  # some process received SIGTERM (multi-process: known at agreement steps)
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    self.requested = True

  def should_stop(self, step: int) -> bool:
    if jax.process_count() == 1:
      self.agreed = self.requested
      return self.agreed
    if step % 10:  # Agreeing across hosts is a collective: only every 10 steps.
      return False
    from jax.experimental import multihost_utils

    self.agreed = bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))
    return self.agreed

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def check_config(config):
  missing = [k for k in REQUIRED if k not in config]
  if missing:
    raise ArtjaxError(f"config lacks required field(s): {', '.join(missing)}")
  if config.total_steps <= 0 or config.batch_size <= 0:
    raise ArtjaxError("config.total_steps and config.batch_size must be positive")


class Trainer:
  """Builds everything a run needs from a config; `run()` trains. Tools reuse its pieces."""

  def __init__(self, config, workdir, devices=None):
    """`devices`: the devices of the mesh (default: all); tools and tests use a subset."""
    check_config(config)
    # The source fills in what it derives (a text vocabulary); a resumed run keeps the stored one.
    config = data.prepare(with_absolute_data_paths(config), stored_data(workdir))
    self.config = config
    self.workdir = workdir_path(workdir)  # gs://... stays a URL (etils.epath); local: pathlib
    self.method = methods.build(config)
    self.mesh = sharding.make_mesh(config.get("mesh"), devices)
    data_size = sharding.batch_size_divisor(self.mesh)
    accum = int(config.get("grad_accum_steps", 1))
    if accum < 1:
      raise ArtjaxError(f"config.grad_accum_steps must be >= 1, got {accum}")
    if config.batch_size % (data_size * accum):
      raise ArtjaxError(f"batch_size {config.batch_size} is not divisible by the mesh's {data_size} batch shards"
                        + (f" times grad_accum_steps={accum}" if accum > 1 else ""))
    if accum > 1 and not self.method.supports_grad_accum:
      raise ArtjaxError(f"the {config.method.name!r} method does not support grad_accum_steps > 1")
    if data_size % jax.process_count():
      raise ArtjaxError(f"the mesh's batch axes (data x fsdp = {data_size}) must span all "
                        f"{jax.process_count()} processes")
    source = data.make_source(config.data, config.data.get("split", "train"))
    self.loader = data.Loader(source, data.make_preprocess(config.data, source), config.batch_size, config.seed,
                              shuffle=config.data.get("shuffle", True),
                              num_threads=config.data.get("num_threads", 2))
    first = self.loader.batch(0)
    num_classes = config.model.get("num_classes", 0)
    if num_classes and "label" in first and not 0 <= first["label"].min() <= first["label"].max() < num_classes:
      # Embedding lookups would return NaN (or, in diffusion, alias the guidance "null" label).
      raise ArtjaxError(f"data labels {first['label'].min()}..{first['label'].max()} do not fit "
                        f"model.num_classes={num_classes}")
    self.abstract_batch = {k: jax.ShapeDtypeStruct((config.batch_size,) + v.shape[1:], v.dtype)
                           for k, v in first.items()}
    self.batch_sharding = sharding.batch_sharding(self.mesh)
    self.ema_decay = float(config.get("ema_decay", 0.0))
    self.rng_data = jax.random.key_data(jax.random.key(config.seed))
    boxed = jax.eval_shape(self._init_boxed, self.rng_data)  # logical axis names on the leaves
    shard_cfg = config.get("sharding", {})
    self.state_sharding = sharding.state_shardings(boxed, self.mesh, shard_cfg)
    self.rules = sharding.rules_from_config(shard_cfg)
    abstract_state = meta.unbox(boxed)
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, self.state_sharding)
    self.step_fn = jax.jit(functools.partial(train_step, self.method, self.ema_decay),
                           in_shardings=(self.state_sharding, self.batch_sharding),
                           out_shardings=(self.state_sharding, sharding.replicated(self.mesh)),
                           donate_argnums=(0,))
    self.eval_every = int(config.get("eval_every", 0))
    self.val_source = None
    if self.eval_every and split_eval.supports(self.method):
      self.val_source = data.make_source(config.data, config.data.get("val_split", "val"))
      self._eval_fn = jax.jit(self.method.eval_sums, out_shardings=sharding.replicated(self.mesh))

  def _zero_batch(self):
    return {k: jnp.zeros(s.shape, s.dtype) for k, s in self.abstract_batch.items()}

  def _init(self, rng_data):
    return create(self.method, rng_data, self._zero_batch(), self.ema_decay)

  def _init_boxed(self, rng_data):
    return create_boxed(self.method, rng_data, self._zero_batch(), self.ema_decay)

  def init_state(self):
    """A fresh state, created directly in its sharded layout."""
    return jax.jit(self._init, out_shardings=self.state_sharding)(self.rng_data)

  def global_batch(self, step: int):
    return data.pipeline.to_global(self.loader.batch(step), self.batch_sharding, self.config.batch_size)

  def compile(self, state):
    """AOT-compiles the train step; returns (compiled, seconds)."""
    t = time.perf_counter()
    with partitioning(self.mesh, self.rules):
      compiled = compile_or_explain(self.step_fn.lower(state, self.abstract_batch_sharded()), self.config)
    check_fits(compiled, self.config)
    return compiled, time.perf_counter() - t

  def abstract_batch_sharded(self):
    return {k: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.batch_sharding)
            for k, s in self.abstract_batch.items()}

  def evaluate(self, state) -> dict:
    """Validation metrics (`config.eval_batches` batches, 0 = the whole split) with the sampling weights."""
    return split_eval.evaluate_split(
        self.method, sampling_params(state.params, state.ema_params), state.model_state, self.config.data,
        self.config.data.get("val_split", "val"), self.config.batch_size,
        max_batches=self.config.get("eval_batches", 0), sharding=self.batch_sharding, source=self.val_source,
        fn=self._eval_fn)

  def write_samples(self, state, path):
    """Samples on every process (the params may be sharded across hosts); process 0 writes the file.

    The seed is fixed across the run (config.seed + 1), so grids show progress on the same latents.
    """
    ema = state.ema_params if prefer_ema(self.config) else None
    sampler = Sampler(self.config, self.method, sampling_params(state.params, ema),
                      state.model_state, step=int(jax.device_get(state.step)), workdir=self.workdir,
                      ema=ema is not None)
    samples = sampler.sample(int(self.config.get("num_samples", self.method.train_samples)),
                             self.config.seed + 1)
    if jax.process_index() == 0:
      encoders.write(samples, path)

  def run(self, stop_at: int | None = None, progress: bool = True):
    """Trains to config.total_steps (or `stop_at`), resuming from the latest checkpoint in the workdir."""
    cfg, lead = self.config, jax.process_index() == 0
    total = cfg.total_steps
    if lead:
      self.workdir.mkdir(parents=True, exist_ok=True)
      (self.workdir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
    preemption = Preemption()  # Installed first: a SIGTERM during restore/compile also saves and exits 0.
    ckpt = Checkpointer(self.workdir, keep=cfg.get("keep_checkpoints", 3))
    start_time = time.perf_counter()
    if ckpt.latest_step() is not None:
      state = ckpt.restore(self.abstract_state)
      _print(f"resumed from {ckpt.directory / str(ckpt.latest_step())}")
    else:
      state = self.init_state()
    start = int(jax.device_get(state.step))
    end = min(total, stop_at) if stop_at else total
    if start >= end:
      _print(f"nothing to do: checkpoint is at step {start}, run ends at {end}")
      ckpt.close()
      preemption.restore()
      return state
    compiled, compile_sec = self.compile(state)
    _print(f"devices: {jax.device_count()} x {jax.devices()[0].platform} in {jax.process_count()} process(es); "
           f"mesh {dict(self.mesh.shape)}; train step compiled in {compile_sec:.1f}s")
    writer = MetricWriter(self.workdir)
    writer.write(start, {"compile_sec": compile_sec})
    log_every = cfg.get("log_every", 50) or end
    sample_every = cfg.get("sample_every", 0)
    ckpt_every = cfg.get("checkpoint_every", 0)
    bar = tqdm(total=end, initial=start, disable=not (progress and lead), mininterval=1.0,
               dynamic_ncols=True, desc="train")
    batches = self.loader.iterate(start, end)
    t_last, s_last = time.perf_counter(), start
    step = saved = start
    metric_sum = None  # on-device running sum: logged values are means over the log interval
    try:
      for step in range(start + 1, end + 1):
        if preemption.requested and jax.process_count() == 1:  # e.g. SIGTERM while compiling
          step -= 1
          break
        batch = data.pipeline.to_global(next(batches), self.batch_sharding, cfg.batch_size)
        try:
          state, metrics = compiled(state, batch)
        except Exception as e:
          if is_out_of_memory(e):
            raise out_of_memory_error(e, compiled, cfg) from None
          raise
        metric_sum = metrics if metric_sum is None else _tree_add(metric_sum, metrics)
        bar.update(1)
        if step % log_every == 0 or step == end:
          metrics = {k: v / (step - s_last) for k, v in jax.device_get(metric_sum).items()}
          metric_sum = None
          now = time.perf_counter()
          rate = (step - s_last) / (now - t_last)
          t_last, s_last = now, step
          scalars = {**metrics, "steps_per_sec": rate, "examples_per_sec": rate * cfg.batch_size}
          writer.write(step, scalars)
          bar.set_postfix({k: f"{float(v):.3g}" for k, v in list(metrics.items())[:4]}, refresh=False)
        if sample_every and (step % sample_every == 0 or step == end):  # all processes; process 0 writes
          self.write_samples(state, self.workdir / "samples" / f"step_{step:07d}{encoders.default_suffix(self.method.output_kind)}")
        if self.val_source is not None and (step % self.eval_every == 0 or step == end):
          val = self.evaluate(state)
          writer.write(step, {f"val_{k}": v for k, v in val.items()})
          _print(f"step {step}: " + ", ".join(f"val {k} {v:.4f}" for k, v in val.items() if k != "tokens"))
          t_last = time.perf_counter()  # keep evaluation time out of the next interval's steps/s
        if ckpt_every and step % ckpt_every == 0 and step != end:
          ckpt.save(step, state, cfg)
          saved = step
        if preemption.should_stop(step):
          break
      if preemption.requested or preemption.agreed:  # process 0 may not have received it itself
        _print(f"SIGTERM: saving step {step} and exiting")
      if step != saved:
        ckpt.save(step, state, cfg)
      ckpt.wait()
    finally:
      bar.close()
      writer.close()
      ckpt.close()  # waits for the last save: SIGTERM must still only set the flag until it is done
      preemption.restore()
    wall = time.perf_counter() - start_time
    _print(f"done at step {step} in {wall:.1f}s wall (compile {compile_sec:.1f}s); workdir {self.workdir}")
    return state


_tree_add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))


@contextlib.contextmanager
def partitioning(mesh, rules):
  """The context a step is traced in: the mesh and the logical-axis rules (activation constraints)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def memory_needed(compiled) -> dict:
  """Bytes the compiled step needs per device, from XLA's memory analysis ({} where the backend has none)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # some backends do not implement it
    return {}
  if m is None:
    return {}
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes",
            "generated_code_size_in_bytes")
  out = {f: int(getattr(m, f, 0) or 0) for f in fields}
  # Donated arguments alias the outputs: count them once.
  out["peak_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"] - out["alias_size_in_bytes"]
                       + out["temp_size_in_bytes"])
  return out


def _gib(n: int) -> str:
  return f"{n / 2 ** 30:.2f} GiB"


MEMORY_ADVICE = ("try a smaller batch_size, grad_accum_steps > 1, model.remat='full', "
                 "sharding.strategy='fsdp' or a bigger mesh")


def config_name(config) -> str:
  return config.get("name") or f"{config.model.get('name', '?')}/{config.method.get('name', '?')}"


def is_out_of_memory(e: Exception) -> bool:
  text = str(e)
  return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def compile_or_explain(lowered, config):
  """`lowered.compile()`, with XLA's failures (out of memory, unsupported ops) as one-line ArtjaxErrors
  naming the config, instead of XLA's dump."""
  try:
    return lowered.compile()
  except Exception as e:  # XlaRuntimeError / JaxRuntimeError, often hundreds of lines
    if is_out_of_memory(e):
      raise ArtjaxError(f"config {config_name(config)!r}: the train step does not fit in device memory "
                        f"({first_line(e)}); {MEMORY_ADVICE}") from None
    raise ArtjaxError(f"config {config_name(config)!r}: XLA could not compile the train step: {first_line(e)}") from None


def out_of_memory_error(e: Exception, compiled, config) -> ArtjaxError:
  """The one-line error for an allocation that failed while running the step."""
  need = memory_needed(compiled).get("peak_bytes")
  needs = f"needs {_gib(need)} per device (XLA's memory analysis)" if need else "does not fit"
  return ArtjaxError(f"config {config_name(config)!r}: out of device memory running the train step, which "
                     f"{needs} ({first_line(e)}); {MEMORY_ADVICE}")


def check_fits(compiled, config, devices=None):
  """Raises ArtjaxError naming the config and the bytes needed when the step's memory analysis exceeds
  what the device reports as its limit (GPUs, TPUs; CPUs report none)."""
  need = memory_needed(compiled).get("peak_bytes")
  device = (devices or jax.local_devices())[0]
  try:
    limit = (device.memory_stats() or {}).get("bytes_limit")
  except Exception:  # backends without allocator statistics
    limit = None
  if need and limit and need > limit:
    raise ArtjaxError(f"config {config_name(config)!r}: the train step needs {_gib(need)} per device, the "
                      f"{device.device_kind} has {_gib(limit)}; {MEMORY_ADVICE}")


def _print(msg):
  if jax.process_index() == 0:
    tqdm.write(msg)


def stored_data(workdir):
  """The data section saved with the latest checkpoint in `workdir` (None for a new run)."""
  from artjax.checkpoint import checkpoint_dir, open_for_reading

  if not checkpoint_dir(workdir).is_dir():
    return None
  with open_for_reading(workdir) as reader:
    if reader.latest_step() is None:
      return None
    return reader.restore_config().data


def train(config, workdir, **kwargs):
  return Trainer(config, workdir).run(**kwargs)
