"""The inference seam: a checkpoint (or a live train state) in, samples with their provenance out.

    sampler = Sampler.from_workdir("runs/mnist_ddpm")             # latest step, EMA weights
    out = sampler.sample(16, seed=0, sampler="ddim", steps=50)    # options checked against the family's
    png_bytes, media_type = encoders.encode(out, "grid")

Every sample has its own key: sample i of a request with seed s is drawn from fold_in(key(s), i),
so a sample does not depend on how requests are chunked (`batch`) or which other requests share its
compiled call (the server coalesces concurrent requests). Compiled functions are cached on the
method per (batch size bucket, static options): a second call of the same shape does not compile
(`Sampler.traces` counts compilations). The CLIs, evaluation, the training loop's sample grids and
the HTTP server all sample through this module.
"""

import dataclasses
import hashlib
import time
from typing import Any

import jax
import numpy as np

import artjax
from artjax import checkpoint, methods
from artjax.errors import ArtjaxError
from artjax.methods.decoding import bucket
from artjax.options import OptionError, check_seed


@dataclasses.dataclass
class Samples:
  """What a Sampler returns: `items` of one output kind plus where they came from.

  kind: the method's output kind (selects the encoder); items: images as float (N, H, W, C) in
  config.data.value_range, or a list of `Completion` strings; provenance: JSON-ready dict (model,
  family, workdir, step, ema, seed, options, num, artjax version); layout: e.g. {"ncol": 10} for
  interpolation grids; config: the run's config (value range, ...).
  """

  kind: str
  items: Any
  provenance: dict
  config: Any
  layout: dict = dataclasses.field(default_factory=dict)

  def __len__(self):
    return len(self.items)


@dataclasses.dataclass(frozen=True)
class Request:
  """`num` samples with `seed` and checked `options` (as `Sampler.check` returns them).

  Sample i is drawn from fold_in(key(seed), offset + i): a request for several prompts numbers its
  choices on from one seed (OpenAI's choice index), without reusing another seed's draws.
  """

  num: int
  seed: int
  options: dict
  offset: int = 0


def _jsonable(value):
  if isinstance(value, bytes):  # a file given as an option (a MIDI primer): recorded by digest, not content
    return {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}
  if isinstance(value, tuple):
    return [_jsonable(v) for v in value]
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating,)):
    return float(value)
  return value


@jax.jit
def _fold_in_rows(seeds, indices):
  return jax.vmap(lambda s, i: jax.random.fold_in(jax.random.key(s), i))(seeds, indices)


def _row_keys(seeds: list, indices: list):
  """(n,) keys fold_in(key(seeds[j]), indices[j]) in one compiled call (per power-of-two row count).

  The same keys as `jax.random.key(seed)` and `fold_in` one row at a time (int64 seeds and indices are
  converted as jax converts a Python int; a seed outside int64 raises OverflowError as `key` does), without
  a vmap trace and three dispatches per request, which cost milliseconds per row on a CPU.
  """
  n = len(seeds)
  padded = bucket(n, 1)
  s, i = np.zeros(padded, np.int64), np.zeros(padded, np.int64)
  s[:n], i[:n] = seeds, indices
  keys = _fold_in_rows(s, i)
  return keys if padded == n else jax.lax.slice_in_dim(keys, 0, n)


SHARD_MIN_SIZE = 2 ** 14  # smaller arrays stay whole on every device of a mesh


class Sampler:
  """Samples from one set of weights of one run. Thread-compatible: callers serialize `run` calls."""

  def __init__(self, config, method, params, model_state, *, step=None, workdir=None, ema=False,
               name=None, max_batch: int = 256, prepare_rng=None):
    """`ema`: whether `params` are EMA weights; then `model_state` is re-derived for them with
    `method.sampling_state` (e.g. BatchNorm statistics re-estimated), keyed by `prepare_rng` (default:
    a key of config.seed, so it is the same every time)."""
    if max_batch < 1:
      raise ArtjaxError(f"max_batch must be >= 1, got {max_batch}")
    self.config, self.method, self.params = config, method, params
    self.step, self.workdir, self.ema, self.max_batch = step, workdir, ema, int(max_batch)
    self.name = name or (str(workdir) if workdir else config.method.name)
    if ema:
      rng = prepare_rng if prepare_rng is not None else jax.random.key(int(config.get("seed", 0)))
      prepare = method.__dict__.setdefault("_sampling_state_jit", jax.jit(method.sampling_state))
      model_state = prepare(params, model_state, rng)
    self.model_state = model_state

  @classmethod
  def from_workdir(cls, workdir, step: int | None = None, ema: bool | None = None, name=None,
                   max_batch: int = 256, mesh=None, shard_min_size: int = SHARD_MIN_SIZE):
    """The checkpoint `step` (default: latest) of WORKDIR. EMA weights when the run keeps them and `ema`
    is True; `ema=None` follows the run's `config.sample_ema` (default True).

    `mesh`: a `jax.sharding.Mesh` (e.g. `artjax.train.sharding.make_mesh({'fsdp': 4})`) to hold the
    weights split over its devices instead of whole on one: every array of at least `shard_min_size`
    elements is split along its largest dimension that all the mesh's devices divide (restored straight
    into place), and XLA gathers what each sampling step needs.
    """
    place = None
    if mesh is not None:
      from artjax.train.sharding import shape_rule

      place = lambda shape: jax.sharding.NamedSharding(  # noqa: E731
          mesh, shape_rule(shape, mesh, tuple(mesh.axis_names), shard_min_size))
    config, items, step = checkpoint.restore_model(workdir, step, place)
    method = methods.build(config)
    use_ema = bool(prefer_ema(config, ema) and items.get("ema_params") is not None)
    params = checkpoint.sampling_params(items["params"], items["ema_params"] if use_ema else None)
    return cls(config, method, params, items["model_state"], step=step, workdir=workdir, ema=use_ema,
               name=name, max_batch=max_batch)

  # --- description -----------------------------------------------------------------------------

  @property
  def output_kind(self) -> str:
    return self.method.output_kind

  @property
  def traces(self) -> int:
    """How many sampling functions were traced (= compiled) so far by this sampler's method."""
    return int(getattr(self.method, "traces", 0))

  def options(self):
    return self.method.options()

  def describe(self) -> dict:
    """JSON-ready facts about the model (the server's model listing)."""
    data = self.config.data
    d = {"family": self.config.method.name, "output_kind": self.output_kind, "step": self.step,
         "ema": self.ema, "options": [o.describe() for o in self.options()]}
    if "image_size" in data:
      d["image_size"] = [int(data.get("image_size", 0))] * 2
      d["channels"] = int(data.get("channels", 0))
    classes = class_names(self.config)
    if classes:
      d["classes"] = classes
    return d

  def check(self, options: dict) -> dict:
    """Options checked and converted (OptionError naming the bad one)."""
    return self.method.check_options(options)

  def batch_key(self, options: dict):
    """Requests whose checked options give equal keys can share one compiled call."""
    return self.method.batch_key(self.method.row_options(options, 0))

  def provenance(self, num: int, seed: int, options: dict) -> dict:
    return {"model": self.name, "family": self.config.method.name,
            "workdir": str(self.workdir) if self.workdir else None, "step": self.step, "ema": self.ema,
            "seed": int(seed), "num": int(num), "options": {k: _jsonable(v) for k, v in options.items()},
            "artjax_version": artjax.__version__}

  # --- sampling --------------------------------------------------------------------------------

  def resolve(self, options: dict) -> dict:
    """Checked options with the model's defaults filled in: what sampling will use (server limits)."""
    return self.method.resolve_options(self.method.row_options(options, 0))

  def sample(self, num: int, seed: int = 0, batch: int | None = None, **options) -> Samples:
    """`num` samples (at most `batch`, default max_batch, per compiled call)."""
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
      raise OptionError("n", f"the number of samples must be a positive integer, got {num!r}")
    seed = check_seed(seed)
    options = self.check(options)
    return self.run([Request(int(num), int(seed), options)], batch=batch)[0]

  def run(self, requests: list[Request], batch: int | None = None) -> list[Samples]:
    """Several requests (options already checked) in as few compiled calls as their options allow."""
    batch = int(batch or self.max_batch)
    if batch < 1:
      raise ArtjaxError(f"batch must be >= 1, got {batch}")
    groups: dict[Any, list] = {}  # batch key -> rows (request index, sample index, options)
    for r, req in enumerate(requests):
      # One key per request: rows of a request differ only in what batch_key ignores (the label).
      group = groups.setdefault(self.batch_key(req.options), [])
      group.extend((r, i, self.method.row_options(req.options, req.offset + i)) for i in range(req.num))
    results = [[None] * req.num for req in requests]
    for group in groups.values():
      for s in range(0, len(group), batch):
        chunk = group[s:s + batch]
        size = min(bucket(len(chunk), 1), batch)
        keys = _row_keys([requests[r].seed for r, _, _ in chunk], [requests[r].offset + i for r, i, _ in chunk])
        out = self.method.sample_rows(self.params, self.model_state, keys, [c[2] for c in chunk], size)
        for (r, i, _), item in zip(chunk, out):
          results[r][i] = item
    return [Samples(self.output_kind, self._stack(items),
                    {**self.provenance(req.num, req.seed, req.options), **({"first_index": req.offset}
                                                                           if req.offset else {})},
                    self.config) for req, items in zip(requests, results)]

  def _stack(self, items):
    if items and isinstance(items[0], np.ndarray):
      return np.stack(items)
    return list(items)

  def interpolate(self, rows: int, cols: int, seed: int = 0, **options) -> Samples:
    """(rows * cols) outputs: row r walks (slerp) from one prior draw to another in `cols` steps.

    Every output is decoded with the same decode key, so only the latent changes along a row (use a
    deterministic sampler, e.g. DDIM, for diffusion). A class-conditional model keeps one class per row.
    """
    import jax.numpy as jnp

    from artjax.methods.base import slerp

    if rows <= 0 or cols < 2:
      raise ArtjaxError(f"interpolation needs >= 1 rows and >= 2 steps, got {rows}, {cols}")
    if not self.method.traceable_sample:
      raise ArtjaxError(f"the {self.config.method.name!r} method has no latent space to interpolate")
    options = self.check(options)
    key = jax.random.key(check_seed(seed))
    decode_options = dict(options)
    if "label" in self.method.sample_options and options.get("label") is None:
      decode_options["label"] = np.repeat(np.arange(rows) % self.method.num_classes, cols)
    method = self.method

    def fn(p, ms):
      a, b = method.prior(jax.random.fold_in(key, 0), rows), method.prior(jax.random.fold_in(key, 1), rows)
      t = jnp.linspace(0.0, 1.0, cols)
      z = jax.vmap(lambda ti: slerp(a, b, ti))(t)           # (cols, rows, ...)
      z = jnp.swapaxes(z, 0, 1).reshape((rows * cols,) + a.shape[1:])
      return method.decode(p, ms, z, jax.random.fold_in(key, 2), **decode_options)

    items = np.asarray(jax.jit(fn)(self.params, self.model_state))
    prov = {**self.provenance(rows * cols, seed, options), "interpolate": [rows, cols]}
    return Samples(self.output_kind, items, prov, self.config, {"ncol": cols})

  def warmup(self, sizes=(1,), **options) -> float:
    """Compiles the sampling function for these batch sizes (and options); returns seconds taken."""
    t = time.perf_counter()
    options = self.check(options)
    for n in sizes:
      self.run([Request(int(n), 0, options)], batch=max(sizes))
    return time.perf_counter() - t


def prefer_ema(config, ema: bool | None = None) -> bool:
  """Whether to sample with the EMA weights: `ema` if given, else the run's `config.sample_ema` (True)."""
  return bool(config.get("sample_ema", True)) if ema is None else bool(ema)


def class_names(config) -> list[str]:
  """Names of the classes a class-conditional model was trained on, from the data source's registry
  (e.g. Fashion-MNIST's 'sneaker'), or digits for MNIST-like sources; [] if unconditional / unknown."""
  num = int(config.model.get("num_classes", 0) or 0)
  if not num:
    return []
  from artjax import data

  names = data.class_names(config.data)
  if names and len(names) == num:
    return list(names)
  return [str(i) for i in range(num)]
