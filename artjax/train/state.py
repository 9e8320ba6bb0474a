"""The train-state pytree and the pure functions that create and advance it."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax.core import meta

from artjax.checkpoint import sampling_params  # noqa: F401  (the read path owns it)


@flax.struct.dataclass
class TrainState:
  step: jax.Array         # int32 scalar: number of updates applied.
  params: Any
  model_state: Any        # non-trained Flax collections (batch_stats, ...); {} if none.
  opt_state: Any
  ema_params: Any         # None when config.ema_decay == 0.
  rng: jax.Array          # raw uint32 key data (checkpointable); per-step keys are fold_in(rng, step).


def create_boxed(method, rng_data, batch, ema_decay: float) -> TrainState:
  """Pure: initial state from a key and an (abstract or real) batch, keeping Flax's logical-axis boxes.

  Leaves of parameters a model names with `nn.with_logical_partitioning` are `LogicallyPartitioned`
  boxes; optax and the EMA copy build their trees from the boxed parameters, so their leaves carry the
  same names. `artjax.train.sharding.state_shardings` reads them; `create` drops them.
  """
  rng = jax.random.wrap_key_data(rng_data)
  init_rng, train_rng = jax.random.split(rng)
  params, model_state = method.init(init_rng, batch)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
      opt_state=method.init_opt_state(params),
      ema_params=jax.tree.map(jnp.copy, params) if ema_decay else None,
      rng=jax.random.key_data(train_rng))


def create(method, rng_data, batch, ema_decay: float) -> TrainState:
  """Pure: the initial state as plain arrays (what is trained and checkpointed)."""
  return meta.unbox(create_boxed(method, rng_data, batch, ema_decay))


def train_step(method, ema_decay: float, state: TrainState, batch):
  """Pure: one update. The step's randomness depends only on (state.rng, state.step)."""
  rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  params, model_state, opt_state, metrics = method.update(
      state.params, state.model_state, state.opt_state, batch, rng)
  ema = state.ema_params
  if ema_decay:
    # Warm-up (as TF's ExponentialMovingAverage with num_updates): early averages forget the init.
    t = state.step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
    ema = optax.incremental_update(params, ema, 1.0 - decay)
  new = state.replace(step=state.step + 1, params=params, model_state=model_state,
                      opt_state=opt_state, ema_params=ema)
  return new, metrics

