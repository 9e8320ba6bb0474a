"""WGAN-GP: the penalty's value, critic training, one real loop step, config errors and sampling."""

from flax.core import meta
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import methods
from artjax.errors import ArtjaxError
from artjax.methods.gan import D, G
from artjax.methods.wgan_gp import gradient_penalty, interpolates
from artjax.train.loop import Trainer
from conftest import smoke_config

DIGITS = {"data.name": "digits", "data.image_size": 16, "model.image_size": 16}


def wgan_config(**overrides):
  """configs/gan/mnist_wgan_gp.py:smoke on the bundled 16x16 digits: batch 10 = 5 critic slices of 2."""
  return smoke_config("configs/gan/mnist_wgan_gp.py:smoke", **{**DIGITS, **overrides})


def init(method, batch_size, seed=0):
  batch = {"image": jax.random.uniform(jax.random.key(seed), (batch_size, 16, 16, 1), minval=-1, maxval=1),
           "label": jnp.arange(batch_size, dtype=jnp.int32) % 10}
  params, model_state = meta.unbox(method.init(jax.random.key(seed + 1), batch))
  return batch, params, model_state


def test_gradient_penalty_of_a_linear_critic_is_analytic():
  w = jax.random.normal(jax.random.key(0), (4, 4, 2))
  w = 3.0 * w / jnp.linalg.norm(w)  # ||w|| = 3 -> penalty (3 - 1)^2 = 4 at every interpolate
  critic = lambda x: jnp.einsum("bhwc,hwc->b", x, w)
  real, fake = (jax.random.normal(jax.random.key(k), (6, 4, 4, 2)) for k in (1, 2))
  x_hat = interpolates(jax.random.key(3), real, fake)
  np.testing.assert_allclose(gradient_penalty(critic, x_hat), 4.0, rtol=1e-5)
  np.testing.assert_allclose(gradient_penalty(lambda x: critic(x) / 3.0, x_hat), 0.0, atol=1e-6)


def test_gradient_penalty_is_per_example():
  # critic(x) = ||x||^2 / 2 has input gradient x: the penalty is the mean of (||x_i|| - 1)^2, not a batch norm.
  x = jnp.stack([jnp.full((2, 2, 1), 0.5), jnp.full((2, 2, 1), 2.0)])  # norms 1 and 4
  critic = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=(1, 2, 3))
  np.testing.assert_allclose(gradient_penalty(critic, x), (0.0 + 9.0) / 2, rtol=1e-5)


def test_interpolates_lie_between_real_and_fake():
  real, fake = jnp.ones((5, 3, 3, 1)), -jnp.ones((5, 3, 3, 1))
  x_hat = np.asarray(interpolates(jax.random.key(0), real, fake))
  eps = (x_hat + 1) / 2  # x_hat = eps * 1 + (1 - eps) * (-1)
  assert ((eps >= 0) & (eps <= 1)).all()
  assert np.allclose(eps, eps[:, :1, :1, :1]), "one eps per example"
  assert len(np.unique(eps[:, 0, 0, 0])) == 5, "eps differs across examples"


def test_init_shapes_and_update_metrics():
  method = methods.build(wgan_config())
  batch, params, model_state = init(method, 10)
  assert set(params) == {G, D} and model_state[D] == {}
  assert params[D]["Dense_0"]["kernel"].shape == (4 * 4 * 8, 1)  # 16 -> 8 -> 4 px, 4 -> 8 channels
  new, _, _, metrics = jax.jit(method.update)(params, model_state, method.init_opt_state(params), batch,
                                              jax.random.key(2))
  assert set(metrics) == {"critic_loss", "wasserstein", "gp", "g_loss", "grad_norm_d", "grad_norm_g"}
  assert all(np.ndim(v) == 0 and np.isfinite(v) for v in metrics.values())
  assert jax.tree.structure(new) == jax.tree.structure(params)
  samples = method.sample(new, model_state, jax.random.key(3), 3)
  assert samples.shape == (3, 16, 16, 1) and float(jnp.abs(samples).max()) <= 1.0


def test_one_step_through_the_loop_on_digits(tmp_path):
  trainer = Trainer(wgan_config(), tmp_path)
  state = trainer.init_state()
  before = jax.device_get(state.params)
  new, metrics = trainer.step_fn(state, trainer.global_batch(0))
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  assert int(new.step) == 1
  assert all(np.isfinite(v) for v in metrics.values())
  assert metrics["gp"] >= 0
  # The logged critic loss is the mean over the 5 critic steps of -W + 10 * GP, so the means agree too.
  np.testing.assert_allclose(metrics["critic_loss"], -metrics["wasserstein"] + 10 * metrics["gp"], rtol=1e-4)
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, jax.device_get(new.params))
  # E[D(real)] - E[D(fake)] and the penalty ignore a constant shift: the critic's output bias gets no gradient.
  assert not changed[D]["Dense_0"].pop("bias")
  assert all(jax.tree.leaves(changed)), "every other parameter must receive an update"


def test_critic_loss_decreases_on_a_fixed_batch():
  method = methods.build(wgan_config(**{"optimizer.lr": 1e-3}))
  batch, params, model_state = init(method, 10)
  real = batch["image"][:4]
  step = jax.jit(lambda p, o: method.critic_step(p, model_state, o, real, None, jax.random.key(5)))
  opt = method.tx[D].init(params[D])
  losses = []
  for _ in range(40):  # same key: same fakes and interpolates, so only the critic changes
    pd, opt, m = step(params, opt)
    params = {**params, D: pd}
    losses.append(float(m["critic_loss"]))
  assert losses[-1] < losses[0] - 1.0, losses
  assert float(m["wasserstein"]) > 0  # the critic now scores real above fake


def test_batch_not_divisible_by_n_critic():
  with pytest.raises(ArtjaxError, match="not divisible by method.n_critic 5"):
    methods.build(wgan_config(batch_size=12))
  method = methods.build(wgan_config())
  batch, params, model_state = init(method, 12)
  with pytest.raises(ArtjaxError, match="a batch of 12 is not divisible"):
    method.update(params, model_state, method.init_opt_state(params), batch, jax.random.key(0))


def test_batch_norm_in_the_critic_is_refused(tmp_path):
  with pytest.raises(ArtjaxError, match="must not use batch norm"):
    Trainer(wgan_config(**{"model.disc_norm": "batch"}), tmp_path)


def test_samples_are_deterministic_per_seed():
  method = methods.build(wgan_config())
  _, params, model_state = init(method, 10)
  fn = jax.jit(lambda k: method.sample(params, model_state, k, 4))
  a, b, c = fn(jax.random.key(1)), fn(jax.random.key(1)), fn(jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
