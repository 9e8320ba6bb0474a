"""The interface between a generative family and the generic training loop, sampler and server.

A method is constructed from the whole config and is then a bundle of pure functions over pytrees:
  init(rng, batch)                                  -> (params, model_state)
  init_opt_state(params)                            -> opt_state
  update(params, model_state, opt_state, batch, rng) -> (params, model_state, opt_state, metrics)
  sample(params, model_state, rng, num, **options)  -> outputs in data space
Sampling is split so tools can walk the latent space (interpolation grids):
  prior(rng, num)                                   -> latents (num, ...): z for GANs/VAEs, x_T for diffusion
  decode(params, model_state, latents, rng, **options) -> outputs
`options` are the keywords a family declares as typed `artjax.options.Option`s in `OPTIONS` and enables
in `sample_options` (e.g. label, guidance, sampler, steps); they are Python values fixed at trace time,
except `label`, which may be a traced int (one per sample) so requests for different classes batch. Conditional families read `label` (an int, or None for
class-balanced labels `arange(num) % num_classes`) and ignore it when unconditional only if it is None.
Optional, for likelihood models (`artjax.evaluate` reports NLL in nats and bits/dim when present):
  log_likelihood(params, model_state, batch, rng, num_samples) -> (B,) estimate of log p(x) in nats
`params` are trained, `model_state` holds other Flax collections (e.g. batch_stats). As Flax's `model.init`,
`init` may return weights boxed in `nn.LogicallyPartitioned` (their logical axis names, which
`artjax.train.sharding` maps onto the mesh); `flax.core.meta.unbox` gives the plain arrays, and every
other function takes either. The loop jits
`update` under the mesh, handles EMA, RNG, checkpoints and logging, so a family never touches those.
Before sampling with EMA weights, `sampling_state(params, model_state, rng)` gives the non-trained
collections to sample them with (BatchNorm statistics re-estimated for those weights; identity by default).
Families with one loss subclass `SingleLossMethod` and write only `loss` and `sample`.
"""

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from artjax import models
from artjax import options as opts
from artjax.errors import ArtjaxError
from artjax.optim import make_optimizer


MAX_COMPILED = 32  # compiled sampling programs kept per method (least recently used dropped)


def apply_module(module, params, state, *args, **kwargs):
  """`module.apply` that also returns the updated non-param collections (unchanged if there are none)."""
  variables = {"params": params, **state}
  if not state:
    return module.apply(variables, *args, **kwargs), state
  out, new_state = module.apply(variables, *args, mutable=list(state), **kwargs)
  return out, {**state, **new_state}


def split_variables(variables):
  """Flax variables -> (params, other collections)."""
  variables = dict(variables)
  return variables.pop("params"), variables


class Method:
  """Base class; see the module docstring for the contract."""

  default_num_samples = 64  # what `artjax.sample` draws when --num is not given
  train_samples = 64        # what the training loop's sample grids hold unless config.num_samples says
  output_kind = "image"  # selects the encoder (artjax.encoders) that turns samples into files / responses.
  OPTIONS: tuple[opts.Option, ...] = ()  # every sampling option the family may take (typed, documented).
  sample_options: tuple[str, ...] = ()  # the names of those this instance takes (e.g. label if conditional).
  # False when `sample` does Python work around its own compiled loop (text: tokenizing, stop strings):
  # callers then call it directly instead of wrapping it in jax.jit.
  traceable_sample = True
  # True when `update` honours config.grad_accum_steps (micro-batches summed inside the compiled step).
  supports_grad_accum = False

  def __init__(self, config):
    self.config = config

  def init(self, rng, batch):
    raise NotImplementedError

  def init_opt_state(self, params):
    raise NotImplementedError

  def update(self, params, model_state, opt_state, batch, rng):
    raise NotImplementedError

  def prior(self, rng, num):
    raise ArtjaxError(f"the {self.config.method.name!r} method does not sample")

  def decode(self, params, model_state, latents, rng, **options):
    raise ArtjaxError(f"the {self.config.method.name!r} method does not sample")

  def sample(self, params, model_state, rng, num, **options):
    self.check_options(options)
    prior_rng, decode_rng = jax.random.split(rng)
    return self.decode(params, model_state, self.prior(prior_rng, num), decode_rng, **options)

  def options(self) -> tuple[opts.Option, ...]:
    """The typed options this instance takes (label bounded by this model's classes)."""
    return tuple(dataclasses.replace(o, maximum=self.num_classes - 1) if o.name == "label" else o
                 for o in self.OPTIONS if o.name in self.sample_options)

  def check_options(self, options) -> dict:
    """`options` checked against `options()` (OptionError naming the bad one); returns them converted."""
    declared = [dataclasses.replace(o, maximum=None) if o.name == "label" else o for o in self.options()]
    options = opts.check(declared, dict(options), f"the {self.config.method.name!r} method")
    label = options.get("label")
    if label is not None and not label < self.num_classes:
      raise opts.OptionError("label", f"sampling option label: the model has {self.num_classes} classes "
                             f"(0..{self.num_classes - 1}), got {label} (out of range)")
    return options

  # --- batched sampling (artjax.inference.Sampler): one row per sample, each with its own key ---------

  def row_options(self, options: dict, index: int) -> dict:
    """The options of sample `index` of a request: class-balanced labels (index % classes) by default.
    Rows of one request may differ only in options `batch_key` ignores."""
    if "label" in self.sample_options and options.get("label") is None:
      return {**options, "label": index % self.num_classes}
    return options

  def resolve_options(self, options: dict) -> dict:
    """Checked options with this model's defaults filled in (what sampling will actually use), so that
    limits apply to effective values and an explicit default shares the compiled call of an omitted one."""
    return dict(options)

  def batch_key(self, options: dict):
    """Rows whose options give equal keys share one compiled call (the label is traced per row)."""
    return tuple(sorted((k, v) for k, v in self.resolve_options(options).items() if k != "label"))

  def sample_rows(self, params, model_state, keys, rows: list[dict], size: int):
    """Outputs (len(rows), ...) for rows sharing one `batch_key`; row i is what `sample(..., keys[i], 1,
    **rows[i])[0]` gives. `keys` is a (len(rows),) key array; padded to `size` rows, so one compiled
    function serves every request of that size bucket.
    """
    n = len(rows)
    if not 0 < n <= size:
      raise ValueError(f"{n} rows do not fit a batch of {size}")
    static = self.batch_key(rows[0])
    labels = None
    if "label" in self.sample_options:
      labels = sample_labels(np.array([r["label"] for r in rows]), n, self.num_classes)
      labels = jnp.concatenate([labels, jnp.zeros((size - n,), labels.dtype)])
    out = self._rows_fn(static, labels is not None)(params, model_state, pad_keys(keys, size), labels)
    return gather_rows(out)[:n]

  def _rows_fn(self, static, with_labels):
    # Bounded: every distinct static option set is a compiled program (a client could ask for many).
    cache = self.__dict__.setdefault("_rows_cache", collections.OrderedDict())
    if (static, with_labels) in cache:
      cache.move_to_end((static, with_labels))
    else:
      while len(cache) >= MAX_COMPILED:
        cache.popitem(last=False)
      options = dict(static)

      def fn(params, model_state, keys, labels):
        self.traces = getattr(self, "traces", 0) + 1  # runs only when jax traces (and compiles) anew

        def one(key, label):
          prior_rng, decode_rng = jax.random.split(key)
          row = {**options, "label": label} if with_labels else options
          return self.decode(params, model_state, self.prior(prior_rng, 1), decode_rng, **row)[0]

        return jax.vmap(one)(keys, labels if with_labels else jnp.zeros(keys.shape, jnp.int32))

      cache[(static, with_labels)] = jax.jit(fn)
    return cache[(static, with_labels)]

  def sampling_state(self, params, model_state, rng):
    """The non-trained collections to sample `params` with; the base class keeps `model_state`."""
    del params, rng
    return model_state


class SingleLossMethod(Method):
  """One network, one optimizer, one scalar loss: implement `loss` (and `init`, `sample`).

  With `config.grad_accum_steps = k > 1` the batch is cut into k micro-batches (rows i, i+k, i+2k, ...,
  so each stays spread over every data shard) whose gradients are averaged inside the compiled step by a
  `lax.scan`: only one micro-batch's activations live at a time. For a loss that is a mean over equally
  weighted examples this is the big batch's gradient (up to float rounding); the metrics are the means
  over micro-batches; micro-batch i draws its randomness from fold_in(rng, i); non-trained collections
  (BatchNorm statistics) are updated micro-batch after micro-batch.
  """

  supports_grad_accum = True

  def __init__(self, config):
    super().__init__(config)
    self.model = models.build(config.model)
    self.tx = make_optimizer(config.optimizer, config.total_steps)

  def loss(self, params, model_state, batch, rng):
    """-> (scalar loss, (new model_state, dict of scalar metrics))."""
    raise NotImplementedError

  def init_opt_state(self, params):
    return self.tx.init(params)

  def update(self, params, model_state, opt_state, batch, rng):
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    k = int(self.config.get("grad_accum_steps", 1))
    if k == 1:
      (loss, (model_state, metrics)), grads = grad_fn(params, model_state, batch, rng)
    else:
      micro = jax.tree.map(lambda x: jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1), batch)

      def one(carry, xs):
        grads, model_state = carry
        mb, i = xs
        (loss, (model_state, metrics)), g = grad_fn(params, model_state, mb, jax.random.fold_in(rng, i))
        return (jax.tree.map(jnp.add, grads, g), model_state), (loss, metrics)

      zeros = jax.tree.map(jnp.zeros_like, params)
      (grads, model_state), (losses, metrics) = jax.lax.scan(one, (zeros, model_state), (micro, jnp.arange(k)))
      grads = jax.tree.map(lambda g: g / k, grads)
      loss, metrics = losses.mean(), jax.tree.map(lambda m: m.mean(0), metrics)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, model_state, opt_state, {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads), **metrics}


def row_keys(rng, num: int):
  """(num,) keys: sample i of a call is drawn from fold_in(rng, i), whatever the batch it lands in."""
  return jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(num))


def pad_keys(keys, size: int):
  """`keys` (n,) padded to `size` rows with fixed keys (padding rows are computed and dropped)."""
  n = keys.shape[0]
  return jnp.concatenate([keys, jax.random.split(jax.random.key(0), size - n)]) if size > n else keys


def gather_rows(out) -> np.ndarray:
  """A sampled batch as numpy on every process (params spread over hosts give a global array)."""
  if not out.is_fully_addressable:
    from jax.experimental import multihost_utils
    out = multihost_utils.process_allgather(out, tiled=True)
  return np.asarray(out)


def prepare_once(prepare, rows: list[dict]) -> list:
  """`prepare(row)` for each row, once per distinct options dict (rows of one request share theirs)."""
  once = {}
  return [once[id(r)] if id(r) in once else once.setdefault(id(r), prepare(r)) for r in rows]


def sample_labels(label, num: int, num_classes: int):
  """Class labels for `num` conditional samples: all `label` (or one each), or class-balanced if None."""
  if label is None:
    return jnp.arange(num) % num_classes
  if isinstance(label, jax.Array):  # traced (checked by the caller): one class for the `num` samples
    return jnp.broadcast_to(jnp.asarray(label, jnp.int32), (num,))
  if np.ndim(label):  # one label per sample (e.g. one class per interpolation row)
    label = np.asarray(label)
    if label.shape != (num,) or label.min() < 0 or label.max() >= num_classes:
      raise ArtjaxError(f"labels must be {num} ints in 0..{num_classes - 1}")
    return jnp.asarray(label)
  if not 0 <= int(label) < num_classes:
    raise ArtjaxError(f"label {label} is out of range: the model has {num_classes} classes (0..{num_classes - 1})")
  return jnp.full((num,), int(label))


def slerp(a, b, t):
  """Spherical interpolation between latents a and b (per row), t in [0, 1] (Shoemake; White 2016 for GANs)."""
  a2, b2 = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
  cos = jnp.sum(a2 * b2, -1) / (jnp.linalg.norm(a2, axis=-1) * jnp.linalg.norm(b2, axis=-1))
  omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))[:, None]
  so = jnp.sin(omega)
  lerp = (1 - t) * a2 + t * b2
  out = jnp.where(so > 1e-6, (jnp.sin((1 - t) * omega) * a2 + jnp.sin(t * omega) * b2) / jnp.where(so > 1e-6, so, 1.0), lerp)
  return out.reshape(a.shape)
