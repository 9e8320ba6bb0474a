"""Class-conditional GANs (label-embedding generator, projection discriminator) for gan and wgan_gp."""

import jax
from flax.core import meta
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import methods
from artjax.errors import ArtjaxError
from artjax.methods.gan import D, G
from artjax.train.loop import Trainer, train
from conftest import run_cli, smoke_config

WGAN = {"data.name": "digits", "data.image_size": 16, "model.image_size": 16}


def conditional(config, num_classes=10):
  config.unlock()
  config.model.num_classes = num_classes
  config.lock()
  return config


def gan_config(num_classes=10, **overrides):
  return conditional(smoke_config(**overrides), num_classes)


def wgan_config(num_classes=10, **overrides):
  return conditional(smoke_config("configs/gan/mnist_wgan_gp.py:smoke", **{**WGAN, **overrides}), num_classes)


def init(method, n=8):
  batch = {"image": jax.random.uniform(jax.random.key(0), (n, 16, 16, 1), minval=-1, maxval=1),
           "label": jnp.arange(n, dtype=jnp.int32) % 10}
  return (batch, *meta.unbox(method.init(jax.random.key(1), batch)))  # plain arrays, without logical names


def test_num_classes_zero_gives_todays_parameter_tree():
  # digits_dcgan.py has no num_classes field: that is the build from before the option existed.
  assert "num_classes" not in smoke_config().model
  _, p_old, s_old = init(methods.build(smoke_config()))
  _, p_new, s_new = init(methods.build(gan_config(num_classes=0)))
  assert jax.tree.structure((p_old, s_old)) == jax.tree.structure((p_new, s_new))
  jax.tree.map(np.testing.assert_array_equal, (p_old, s_old), (p_new, s_new))
  assert methods.build(gan_config(num_classes=0)).sample_options == ()


def test_conditional_parameters():
  method = methods.build(gan_config())
  _, params, _ = init(method)
  assert method.sample_options == ("label",)
  assert params[G]["Embed_0"]["embedding"].shape == (10, 8)  # latent_dim 8: the label joins z at z's size
  assert params[D]["Embed_0"]["embedding"].shape == (10, 4 * 4 * 8)  # one vector per class over D's features
  assert params[G]["Dense_0"]["kernel"].shape[0] == 16  # z (8) ++ embedding (8)


@pytest.mark.parametrize("make", [gan_config, wgan_config], ids=["gan", "wgan_gp"])
def test_one_conditional_step_through_the_loop(make, tmp_path):
  trainer = Trainer(make(), tmp_path)
  state = trainer.init_state()
  batch = trainer.global_batch(0)
  assert "label" in batch
  before = jax.device_get(state.params)
  new, metrics = trainer.step_fn(state, batch)
  assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, jax.device_get(new.params))
  if make is wgan_config:  # the Wasserstein loss and penalty are blind to the critic's output bias
    assert not changed[D]["Dense_0"].pop("bias")
  assert all(jax.tree.leaves(changed)), "every parameter (embeddings included) must receive an update"
  # Only the rows of classes seen in the batch move in D's projection embedding.
  seen = np.unique(np.asarray(batch["label"]))
  moved = np.any(before[D]["Embed_0"]["embedding"] != jax.device_get(new.params)[D]["Embed_0"]["embedding"], axis=1)
  np.testing.assert_array_equal(np.flatnonzero(moved), seen)


def test_projection_discriminator_uses_the_label():
  method = methods.build(gan_config())
  batch, params, state = init(method)
  x = batch["image"][:2]
  logit = lambda y: method.disc.apply({"params": params[D], **state[D]}, x, train=False, label=jnp.array(y))
  a, b = logit([1, 1]), logit([2, 2])
  assert not np.allclose(a, b)
  # logit(y) - logit(y') = <embed(y) - embed(y'), h>: the difference is linear in the embedding rows.
  emb = params[D]["Embed_0"]["embedding"]
  swapped = {**params[D], "Embed_0": {"embedding": emb.at[1].set(emb[2])}}
  np.testing.assert_allclose(method.disc.apply({"params": swapped, **state[D]}, x, train=False, label=jnp.array([1, 1])),
                             b, rtol=1e-5)


@pytest.mark.parametrize("make", [gan_config, wgan_config], ids=["gan", "wgan_gp"])
def test_label_option_changes_samples(make):
  method = methods.build(make())
  _, params, state = init(method, 10)
  sample = lambda label, seed=0: np.asarray(method.sample(params, state, jax.random.key(seed), 10, label=label))
  threes, fives, balanced = sample(3), sample(5), sample(None)
  assert not np.allclose(threes, fives)
  # Same z: the class-balanced draw gives example i the label i % 10.
  np.testing.assert_allclose(balanced[3], threes[3], atol=1e-6)
  np.testing.assert_allclose(balanced[5], fives[5], atol=1e-6)
  np.testing.assert_array_equal(sample(3, seed=7), sample(3, seed=7))
  assert not np.allclose(sample(3, seed=7), threes)
  with pytest.raises(ArtjaxError, match="label: the model has 10 classes"):
    sample(10)


def test_unconditional_gan_refuses_a_label():
  method = methods.build(smoke_config())
  _, params, state = init(method)
  with pytest.raises(ArtjaxError, match="no sampling option"):
    method.sample(params, state, jax.random.key(0), 2, label=1)
  with pytest.raises(ArtjaxError, match="unconditional"):
    method.decode(params, state, method.prior(jax.random.key(0), 2), jax.random.key(1), label=1)


def test_conditional_needs_labelled_data():
  method = methods.build(gan_config())
  with pytest.raises(ArtjaxError, match="yields no labels"):
    method.init(jax.random.key(0), {"image": jnp.zeros((2, 16, 16, 1))})


def test_sample_cli_label(tmp_path):
  train(gan_config(total_steps=2, sample_every=0), tmp_path, progress=False)

  def sample(out, *args):
    return run_cli("-m", "artjax.sample", "--workdir", str(tmp_path), "--out", str(tmp_path / out), "--num", "4", *args)

  for name, label in (("a", "3"), ("b", "3"), ("c", "4")):
    p = sample(f"{name}.npy", "--label", label, "--seed", "1")
    assert p.returncode == 0, p.stderr
  a, b, c = (np.load(tmp_path / f"{n}.npy") for n in "abc")
  assert a.shape == (4, 16, 16, 1)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  p = sample("x.npy", "--label", "12")
  assert p.returncode == 2 and "label: the model has 10 classes (0..9), got 12" in p.stderr and "Traceback" not in p.stderr, p.stderr
