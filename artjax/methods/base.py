"""The interface between a generative family and the generic training loop, sampler and server.

A method is constructed from the whole config and is then a bundle of pure functions over pytrees:
  init(rng, batch)                                  -> (params, model_state)
  init_opt_state(params)                            -> opt_state
  update(params, model_state, opt_state, batch, rng) -> (params, model_state, opt_state, metrics)
  sample(params, model_state, rng, num, **options)  -> outputs in data space
`params` are trained, `model_state` holds other Flax collections (e.g. batch_stats). The loop jits
`update` under the mesh, handles EMA, RNG, checkpoints and logging, so a family never touches those.
Families with one loss subclass `SingleLossMethod` and write only `loss` and `sample`.
"""

import jax
import optax

from artjax import models
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

  def __init__(self, config):
    self.config = config

  def init(self, rng, batch):
    raise NotImplementedError

  def init_opt_state(self, params):
    raise NotImplementedError

  def update(self, params, model_state, opt_state, batch, rng):
    raise NotImplementedError

  def sample(self, params, model_state, rng, num, **options):
    raise NotImplementedError


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
