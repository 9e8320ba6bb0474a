"""The interface between a generative family and the generic training loop, sampler and server.

A method is constructed from the whole config and is then a bundle of pure functions over pytrees:
  init(rng, batch)                                  -> (params, model_state)
  init_opt_state(params)                            -> opt_state
  update(params, model_state, opt_state, batch, rng) -> (params, model_state, opt_state, metrics)
  sample(params, model_state, rng, num, **options)  -> outputs in data space
Sampling is split so tools can walk the latent space (interpolation grids):
  prior(rng, num)                                   -> latents (num, ...): z for GANs/VAEs, x_T for diffusion
  decode(params, model_state, latents, rng, **options) -> outputs
`options` are the keywords a family lists in `sample_options` (e.g. label, guidance, sampler, steps);
they are Python values fixed at trace time. Conditional families read `label` (an int, or None for
class-balanced labels `arange(num) % num_classes`) and ignore it when unconditional only if it is None.
Optional, for likelihood models (`artjax.evaluate` reports NLL in nats and bits/dim when present):
  log_likelihood(params, model_state, batch, rng, num_samples) -> (B,) estimate of log p(x) in nats
`params` are trained, `model_state` holds other Flax collections (e.g. batch_stats). The loop jits
`update` under the mesh, handles EMA, RNG, checkpoints and logging, so a family never touches those.
Families with one loss subclass `SingleLossMethod` and write only `loss` and `sample`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from artjax import models
from artjax.errors import ArtjaxError
from artjax.optim import make_optimizer


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

  output_kind = "image"  # selects the writer the sampling tool and the loop use for outputs.
  sample_options: tuple[str, ...] = ()  # keyword options `decode`/`sample` accept.
  # False when `sample` does Python work around its own compiled loop (text: tokenizing, stop strings):
  # callers then call it directly instead of wrapping it in jax.jit.
  traceable_sample = True

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

  def check_options(self, options):
    unknown = sorted(set(options) - set(self.sample_options))
    if unknown:
      known = ", ".join(self.sample_options) or "none"
      raise ArtjaxError(f"the {self.config.method.name!r} method has no sampling option(s) "
                        f"{', '.join(unknown)}; it takes: {known}")


class SingleLossMethod(Method):
  """One network, one optimizer, one scalar loss: implement `loss` (and `init`, `sample`)."""

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
    (loss, (model_state, metrics)), grads = jax.value_and_grad(self.loss, has_aux=True)(
        params, model_state, batch, rng)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, model_state, opt_state, {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads), **metrics}


def sample_labels(label, num: int, num_classes: int):
  """Class labels for `num` conditional samples: all `label` (or one each), or class-balanced if None."""
  if label is None:
    return jnp.arange(num) % num_classes
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
