"""GAN.sampling_state: the generator's BatchNorm statistics re-estimated for other weights (EMA)."""

from flax.core import meta
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import methods
from artjax.errors import ArtjaxError
from artjax.methods.gan import BN_RECALIBRATION_BATCHES, D, G
from conftest import smoke_config

K, SIZE = 3, 6


def gan(num_classes=0, batches=K, size=SIZE, path="configs/gan/digits_dcgan.py:smoke", batch_size=None, **model):
  config = smoke_config(path, **({"data.name": "digits", "data.image_size": 16, "model.image_size": 16}
                                 if "wgan" in path else {}))
  with config.unlocked():
    config.model.num_classes = num_classes
    config.model.update(model)
    if batch_size is not None:
      config.batch_size = batch_size
    if batches is not None:
      config.method.bn_recalibration_batches = batches
    if size is not None:
      config.method.bn_recalibration_batch_size = size
  method = methods.build(config)
  batch = {"image": jax.random.uniform(jax.random.key(0), (8, 16, 16, 1), minval=-1, maxval=1),
           "label": jnp.arange(8, dtype=jnp.int32) % max(num_classes, 1)}
  params, model_state = meta.unbox(method.init(jax.random.key(1), batch))
  return method, params, model_state


def perturbed(params, scale=0.3, seed=7):
  """Other generator weights (standing in for an EMA that differs from the raw weights)."""
  leaves, tree = jax.tree.flatten(params[G])
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  new = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
  return {**params, G: jax.tree.unflatten(tree, new)}


def pre_bn_activations(method, params, model_state, z, labels):
  """Direct computation: the inputs of the generator's BatchNorm layers in a train-mode forward,
  keyed like batch_stats (the outputs of the Dense / Upsample layer before each BatchNorm)."""
  c = {"label": labels} if labels is not None else {}
  _, state = method.gen.apply({"params": params[G], **model_state[G]}, z, train=True,
                              capture_intermediates=True, mutable=["batch_stats", "intermediates"], **c)
  inter = state["intermediates"]
  n_up = len([k for k in inter if k.startswith("Upsample_")])
  dense = np.asarray(inter["Dense_0"]["__call__"][0], np.float64)
  ch = method.gen.base_channels * 2 ** n_up
  res = int(round((dense.shape[1] / ch) ** 0.5))
  acts = {"BatchNorm_0": dense.reshape(dense.shape[0], res, res, ch)}  # the generator reshapes, then normalizes
  for i in range(n_up):
    acts[f"BatchNorm_{i + 1}"] = np.asarray(inter[f"Upsample_{i}"]["__call__"][0], np.float64)
  return acts


@pytest.mark.parametrize("num_classes", [0, 10], ids=["unconditional", "conditional"])
def test_statistics_are_the_average_over_k_batches_of_the_pre_bn_batch_statistics(num_classes):
  method, params, model_state = gan(num_classes)
  params = perturbed(params)
  rng = jax.random.key(3)
  new = method.sampling_state(params, model_state, rng)

  expected = {}
  for i, key in enumerate(jax.random.split(rng, K)):  # the K batches: z from the i-th split key
    z = method.prior(key, SIZE)
    labels = (jnp.arange(SIZE) + i * SIZE) % num_classes if num_classes else None  # class-balanced cycle
    for name, x in pre_bn_activations(method, params, model_state, z, labels).items():
      per_batch_mean = x.mean((0, 1, 2))
      per_batch_var = ((x - per_batch_mean) ** 2).mean((0, 1, 2))  # biased, as BatchNorm normalizes with
      acc = expected.setdefault(name, {"mean": 0.0, "var": 0.0})
      acc["mean"] += per_batch_mean / K
      acc["var"] += per_batch_var / K

  stats = new[G]["batch_stats"]
  assert set(stats) == set(expected) == set(model_state[G]["batch_stats"])
  for name in expected:
    for s in ("mean", "var"):
      got = stats[name][s]
      assert got.shape == model_state[G]["batch_stats"][name][s].shape and got.dtype == jnp.float32
      np.testing.assert_allclose(got, expected[name][s], rtol=2e-5, atol=1e-6, err_msg=f"{name}/{s}")
  # Not the momentum average, nor the variance pooled over all K * SIZE activations: those differ.
  pooled = {}
  for i, key in enumerate(jax.random.split(rng, K)):
    labels = (jnp.arange(SIZE) + i * SIZE) % num_classes if num_classes else None
    for name, x in pre_bn_activations(method, params, model_state, method.prior(key, SIZE), labels).items():
      pooled.setdefault(name, []).append(x)
  x = np.concatenate(pooled["BatchNorm_0"])
  assert not np.allclose(stats["BatchNorm_0"]["var"], x.var((0, 1, 2)), rtol=1e-3)


def test_disabled_or_stateless_generator_keeps_the_state():
  method, params, model_state = gan(batches=0)
  assert method.sampling_state(perturbed(params), model_state, jax.random.key(0)) is model_state
  method, params, model_state = gan(gen_norm="layer")  # no batch_stats in the generator
  assert not jax.tree.leaves(model_state[G])
  assert method.sampling_state(perturbed(params), model_state, jax.random.key(0)) is model_state


def test_defaults():
  method, _, _ = gan(batches=None, size=None)
  assert BN_RECALIBRATION_BATCHES > 0
  assert method.generator_batch_size() == method.config.batch_size  # 8 in the smoke config
  wgan, _, _ = gan(batches=None, size=None, path="configs/gan/mnist_wgan_gp.py:smoke", disc_norm="layer")
  assert wgan.generator_batch_size() == wgan.config.batch_size // wgan.n_critic  # the m of one critic slice


def test_default_batch_size_is_the_generator_training_batch():
  method, params, model_state = gan(batches=1, size=None, batch_size=12)  # not the init batch's 8
  rng = jax.random.key(5)
  new = method.sampling_state(params, model_state, rng)
  z = method.prior(jax.random.split(rng, 1)[0], method.config.batch_size)
  x = pre_bn_activations(method, params, model_state, z, None)["BatchNorm_1"]
  np.testing.assert_allclose(new[G]["batch_stats"]["BatchNorm_1"]["mean"], x.mean((0, 1, 2)), rtol=2e-5, atol=1e-6)


def test_pure_deterministic_and_jittable():
  method, params, model_state = gan()
  params = perturbed(params)
  before = jax.tree.map(np.array, (params, model_state))
  a = method.sampling_state(params, model_state, jax.random.key(11))
  b = jax.jit(method.sampling_state)(params, model_state, jax.random.key(11))
  c = method.sampling_state(params, model_state, jax.random.key(12))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
  assert not np.allclose(a[G]["batch_stats"]["BatchNorm_0"]["mean"], c[G]["batch_stats"]["BatchNorm_0"]["mean"])
  # Inputs untouched (params, and the old statistics), the discriminator's state passed through as is.
  jax.tree.map(np.testing.assert_array_equal, (params, model_state), before)
  assert a[D] is model_state[D]
  assert jax.tree.leaves(model_state[D])  # the smoke discriminator has batch norm: there was something to keep
  assert jax.tree.structure(a) == jax.tree.structure(model_state)


def test_sampling_with_the_new_state_differs_and_matches_the_ema_weights():
  method, params, model_state = gan(batches=20, size=64)
  # Running statistics collected by the raw weights over a few train-mode forwards, as training does.
  raw_state = model_state
  for i in range(30):
    z = method.prior(jax.random.key(100 + i), 64)
    _, s = method.gen.apply({"params": params[G], **raw_state[G]}, z, train=True, mutable=["batch_stats"])
    raw_state = {**raw_state, G: s}
  ema = perturbed(params)
  new_state = method.sampling_state(ema, raw_state, jax.random.key(0))
  sample = jax.jit(lambda p, ms: method.sample(p, ms, jax.random.key(9), 16))
  old_out, new_out = sample(ema, raw_state), sample(ema, new_state)
  assert np.abs(np.asarray(old_out) - np.asarray(new_out)).max() > 1e-2
  # With the re-estimated statistics, eval-mode outputs of the EMA weights are close to their
  # train-mode (batch statistics) outputs; with the raw weights' statistics they are not.
  z = method.prior(jax.random.key(42), 256)
  train_out, _ = method.gen.apply({"params": ema[G], **new_state[G]}, z, train=True, mutable=["batch_stats"])
  decode = lambda ms: method.decode(ema, ms, z, jax.random.key(0))
  err_new = float(jnp.abs(decode(new_state) - train_out).mean())
  err_old = float(jnp.abs(decode(raw_state) - train_out).mean())
  assert err_new < 0.5 * err_old, (err_new, err_old)


def test_layer_applied_twice_is_refused():
  import flax.linen as nn

  class Twice(nn.Module):
    @nn.compact
    def __call__(self, z, train=True):
      bn = nn.BatchNorm(use_running_average=not train)
      return bn(bn(nn.Dense(4)(z)))

  method, _, _ = gan()
  method.gen = Twice()
  variables = meta.unbox(method.gen.init(jax.random.key(0), jnp.zeros((2, 8)), train=False))
  params = {G: variables["params"], D: {}}
  with pytest.raises(ArtjaxError, match="more than once"):
    method.sampling_state(params, {G: {"batch_stats": variables["batch_stats"]}, D: {}}, jax.random.key(0))


def test_sample_ema_config_picks_the_default_weights(tmp_path):
  """GAN configs sample the raw weights by default (they score better, experiments/README.md);
  --ema (ema=True) samples the EMA with re-estimated BatchNorm statistics."""
  from artjax.inference import Sampler
  from artjax.train.loop import train
  from conftest import smoke_config

  config = smoke_config(**{"ema_decay": 0.9, "sample_every": 0})
  with config.unlocked():
    config.sample_ema = False
  train(config, tmp_path, progress=False)
  raw, ema = Sampler.from_workdir(tmp_path), Sampler.from_workdir(tmp_path, ema=True)
  assert not raw.ema and ema.ema
  a, b = raw.sample(4, seed=0).items, ema.sample(4, seed=0).items
  assert not np.allclose(a, b)
  stats = lambda s: s.model_state["generator"]["batch_stats"]  # noqa: E731
  assert not all(np.allclose(x, y) for x, y in zip(jax.tree.leaves(stats(raw)), jax.tree.leaves(stats(ema))))
