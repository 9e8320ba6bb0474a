"""VAE family: shapes, training through the loop, the discretized logistic, the IWAE estimator, conditioning."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from artjax import data, methods
from artjax.errors import ArtjaxError
from artjax.methods.vae import HALF_BIN, MIN_LOG_SCALE, discretized_logistic_log_prob
from artjax.train.loop import train
from conftest import smoke_config

TINY = {"data.name": "digits", "data.image_size": 16, "model.image_size": 16}


def tiny_config(**overrides):
  return smoke_config("configs/vae/mnist_vae.py:smoke", **{**TINY, **overrides})


def build(**overrides):
  config = tiny_config(**overrides)
  method = methods.build(config)
  source, preprocess = data.make_source(config.data, "train"), data.make_preprocess(config.data)
  rows = [preprocess(source[i], 0) for i in range(8)]  # 8 real digits (labels 0..7), as the loader gives them
  batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}
  params, state = meta.unbox(method.init(jax.random.key(1), batch))
  return method, params, state, batch


@pytest.fixture(scope="module")
def trained():
  """A tiny Bernoulli VAE fitted for 60 steps to one fixed batch; the per-step losses."""
  method, params, state, batch = build(**{"optimizer.lr": 3e-3})  # 1e-3 fits too slowly for 60 steps
  opt = method.init_opt_state(params)

  def step(carry, i):
    p, o = carry
    p, _, o, m = method.update(p, state, o, batch, jax.random.fold_in(jax.random.key(2), i))
    return (p, o), m["loss"]

  (params, _), losses = jax.jit(lambda p, o: jax.lax.scan(step, (p, o), jnp.arange(60)))(params, opt)
  return method, params, state, batch, np.asarray(losses)


def test_shapes_and_ranges():
  for likelihood, vr in (("bernoulli", (0.0, 1.0)), ("logistic", (-1.0, 1.0))):
    method, params, state, batch = build(**{"method.likelihood": likelihood, "method.binarize": False,
                                            "data.value_range": vr})
    z = method.prior(jax.random.key(3), 5)
    assert z.shape == (5, 4)
    out = jax.jit(lambda p, z: method.decode(p, state, z, None))(params, z)
    assert out.shape == (5, 16, 16, 1)
    assert vr[0] <= float(out.min()) and float(out.max()) <= vr[1]
    rec = jax.jit(lambda p, x: method.reconstruct(p, state, x, None))(params, batch["image"])
    assert rec.shape == batch["image"].shape
    assert jax.jit(lambda p: method.sample(p, state, jax.random.key(6), 3))(params).shape == (3, 16, 16, 1)
    assert method.sample_options == ()


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_other_sizes_and_colour(size, channels):
  method = methods.build(tiny_config(**{"data.image_size": size, "model.image_size": size, "data.channels": channels,
                                        "model.channels": channels, "method.likelihood": "logistic",
                                        "method.binarize": False, "data.value_range": (-1.0, 1.0)}))
  batch = {"image": jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)}
  params, state = meta.unbox(jax.eval_shape(method.init, jax.random.key(0), batch))  # drop logical-axis boxes
  assert params["decoder"]["Conv_0"]["kernel"].shape[-1] == 2 * channels  # a location and a log-scale each
  out = jax.eval_shape(lambda p: method.sample(p, state, jax.random.key(1), 3), params)
  assert out.shape == (3, size, size, channels)


def test_bad_config():
  with pytest.raises(ArtjaxError, match="unknown method.likelihood 'gaussian'"):
    methods.build(tiny_config(**{"method.likelihood": "gaussian"}))
  with pytest.raises(ArtjaxError, match="value_range"):  # logistic models [-1, 1]; the config says [0, 1]
    methods.build(tiny_config(**{"method.likelihood": "logistic", "method.binarize": False}))
  with pytest.raises(ArtjaxError, match="binarize"):
    methods.build(tiny_config(**{"method.likelihood": "logistic", "data.value_range": (-1.0, 1.0)}))


def test_train_loop_logs_elbo_terms_and_writes_samples(tmp_path):
  train(tiny_config(**{"total_steps": 2, "checkpoint_every": 0}), tmp_path, progress=False)
  row = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"elbo"' in line][-1]
  assert row["step"] == 2
  assert all(np.isfinite(row[k]) for k in ("loss", "elbo", "recon", "kl", "bits_per_dim", "grad_norm"))
  np.testing.assert_allclose(row["elbo"], -(row["recon"] + row["kl"]), rtol=1e-5)
  np.testing.assert_allclose(row["loss"], -row["elbo"], rtol=1e-5)  # beta = 1
  np.testing.assert_allclose(row["bits_per_dim"], -row["elbo"] / (16 * 16 * np.log(2)), rtol=1e-5)
  assert row["kl"] >= 0
  assert (tmp_path / "samples" / "step_0000002.png").is_file()


def test_loss_decreases_on_a_fixed_batch(trained):
  *_, losses = trained
  assert np.all(np.isfinite(losses))
  assert losses[-10:].mean() < 0.8 * losses[:5].mean(), losses


def test_sampling_is_deterministic_per_seed(trained):
  method, params, state, *_ = trained
  fn = jax.jit(lambda rng: method.sample(params, state, rng, 6))
  a, b, c = fn(jax.random.key(7)), fn(jax.random.key(7)), fn(jax.random.key(8))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert len({np.asarray(x).tobytes() for x in a}) == 6


def test_discretized_logistic_is_normalized():
  x = jnp.arange(256, dtype=jnp.float32) * (2.0 / 255.0) - 1.0  # every 8-bit value in [-1, 1]
  for loc, log_scale in ((0.0, 0.0), (0.3, -2.0), (-0.99, -4.0), (1.7, -1.0), (-0.5, MIN_LOG_SCALE), (0.2, 3.0),
                         (2 / 255 * 100 - 1 + 1 / 255, MIN_LOG_SCALE)):  # loc on a bin edge, sharpest scale
    lp = discretized_logistic_log_prob(jnp.float32(loc), jnp.float32(log_scale), x)
    assert np.all(np.isfinite(lp)), (loc, log_scale)
    total = np.exp(np.asarray(lp, np.float64)).sum()
    np.testing.assert_allclose(total, 1.0, atol=2e-5, err_msg=f"loc {loc}, log_scale {log_scale}")
  # The mass concentrates where it should: a sharp logistic at a bin centre puts
  # P(|X - loc| < 1/255) = 2 sigmoid(1/(255 s)) - 1 = tanh(1/(510 s)) in that bin.
  lp = discretized_logistic_log_prob(x[77], jnp.float32(MIN_LOG_SCALE), x)
  assert int(jnp.argmax(lp)) == 77
  np.testing.assert_allclose(np.exp(lp[77]), np.tanh(HALF_BIN / np.exp(MIN_LOG_SCALE) / 2), rtol=1e-5)
  grads = jax.grad(lambda l, s: discretized_logistic_log_prob(l, s, x).sum(), argnums=(0, 1))(0.3, MIN_LOG_SCALE)
  assert all(np.isfinite(g) for g in grads)


def reference_log_weights(method, params, image, rng, k):
  """(K, B) log p(x|z) + log N(z; 0, I) - log N(z; mean, std) in float64 numpy, z drawn as log_likelihood documents."""
  x_rng, z_rng = jax.random.split(rng)
  x = np.asarray(jax.random.bernoulli(x_rng, image).astype(jnp.float32))
  mean, logvar = (np.asarray(a, np.float64) for a in method._encode(params, jnp.asarray(x), None))
  eps = np.asarray(jax.random.normal(z_rng, (k,) + mean.shape), np.float64)
  std = np.exp(0.5 * logvar)
  z = mean + std * eps
  logits = np.asarray(method._decode_params(params, jnp.asarray(z.reshape(-1, z.shape[-1]), jnp.float32), None),
                      np.float64).reshape((k,) + x.shape)
  p = 1 / (1 + np.exp(-logits))
  log_px = (x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(k, len(x), -1).sum(-1)
  log_prior = (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(-1)
  log_q = (-0.5 * eps ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
  return log_px + log_prior - log_q


def test_iwae_matches_a_float64_reference(trained):
  method, params, state, batch, _ = trained
  rng = jax.random.key(9)
  for k in (1, 16):  # K = 1: the single-sample ELBO (Monte Carlo KL) with the same binarization and noise
    est = jax.jit(lambda p, b: method.log_likelihood(p, state, b, rng, k))(params, batch)
    lw = reference_log_weights(method, params, batch["image"], rng, k)
    expected = np.log(np.mean(np.exp(lw - lw.max(0)), axis=0)) + lw.max(0)
    np.testing.assert_allclose(est, expected, rtol=1e-4, atol=1e-2)
    assert np.all(est >= lw.mean(0) - 1e-3) and np.all(est <= lw.max(0) + 1e-3)  # Jensen; and log-MEAN-exp


def test_iwae_chunking_does_not_change_the_estimate(trained):
  method, params, state, batch, _ = trained
  rng = jax.random.key(10)
  one_chunk = method.log_likelihood(params, state, batch, rng, 13)
  method.nll_chunk = 8 * 5  # 5 samples per decoder call: 3 chunks, the last padded with 2 dropped samples
  try:
    chunked = jax.jit(lambda p, b: method.log_likelihood(p, state, b, rng, 13))(params, batch)
  finally:
    method.nll_chunk = 4096
  np.testing.assert_allclose(chunked, one_chunk, rtol=1e-5, atol=1e-4)


def test_iwae_is_tighter_than_the_elbo(trained):
  method, params, state, batch, _ = trained
  # Already-binary images: binarizing them again is the identity, so every estimate sees the same x.
  batch = {**batch, "image": (batch["image"] > 0.5).astype(jnp.float32)}
  iwae = jax.jit(jax.vmap(lambda r, k: method.log_likelihood(params, state, batch, r, k), (0, None)),
                 static_argnums=1)
  keys = jax.random.split(jax.random.key(11), 8)
  iwae_4, iwae_64 = float(iwae(keys, 4).mean()), float(iwae(keys, 64).mean())
  eps = jax.random.normal(jax.random.key(12), (256, 8, method.latent_dim))
  elbo = float(jax.vmap(lambda e: method.elbo_terms(params, batch["image"], None, e)[0])(eps).mean())
  # Burda et al. 2016, Theorem 1: E[IWAE_K] >= E[IWAE_m] for K >= m, and IWAE_1 is the ELBO.
  assert elbo + 1.0 < iwae_4 < iwae_64 - 0.5, (elbo, iwae_4, iwae_64)  # measured: -103.8, -101.7, -100.3


def test_iwae_k1000_is_jittable_and_memory_bounded():
  method, params, state, batch = build(**{"method.nll_chunk": 32})
  fn = jax.jit(lambda p, b, r: method.log_likelihood(p, state, b, r, 1000))
  est = fn(params, {k: v[:2] for k, v in batch.items()}, jax.random.key(13))
  assert est.shape == (2,) and np.all(np.isfinite(est))
  # Discrete data: an estimate of log P(x) near a probability, far below 0 for 256 random-ish binary pixels.
  assert np.all(est < 0)
  with pytest.raises(ArtjaxError, match="num_samples"):
    method.log_likelihood(params, state, batch, jax.random.key(0), 0)


def test_conditional_labels():
  method, params, state, batch = build(**{"model.num_classes": 10})
  assert method.sample_options == ("label",)
  z = method.prior(jax.random.key(14), 4)
  three = method.decode(params, state, z, None, label=3)
  five = method.decode(params, state, z, None, label=5)
  assert three.shape == (4, 16, 16, 1)
  assert not np.allclose(three, five)
  balanced = method.decode(params, state, jnp.repeat(z[:1], 10, 0), None)  # labels 0..9
  np.testing.assert_allclose(balanced[3], three[0], rtol=1e-6)
  for bad in (10, -1):
    with pytest.raises(ArtjaxError, match="out of range|must be >= 0"):
      method.sample(params, state, jax.random.key(0), 2, label=bad)
  rec = method.reconstruct(params, state, batch["image"], None, label=batch["label"])
  assert rec.shape == batch["image"].shape
  with pytest.raises(ArtjaxError, match="labels"):
    method.reconstruct(params, state, batch["image"], None)
  # Conditional training and NLL read the batch's labels.
  _, _, _, metrics = jax.jit(method.update)(params, state, method.init_opt_state(params), batch, jax.random.key(0))
  assert np.isfinite(float(metrics["loss"]))
  assert method.log_likelihood(params, state, batch, jax.random.key(0), 3).shape == (8,)


def test_unconditional_rejects_a_label():
  method, params, state, _ = build()
  with pytest.raises(ArtjaxError, match="no sampling option"):
    method.sample(params, state, jax.random.key(0), 2, label=3)
