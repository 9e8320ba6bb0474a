"""Diffusion: schedules, a compiled training step, sampler identities, determinism and guidance."""

from flax.core import meta
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import methods
from artjax.errors import ArtjaxError
from artjax.methods.diffusion import beta_schedule, timestep_sequence
from conftest import run_cli, smoke_config

TINY = {"data.name": "digits", "data.image_size": 8, "model.attention_resolutions": (4,),
        "method.num_timesteps": 20}


def build(**overrides):
  config = smoke_config("configs/diffusion/mnist_ddpm.py:smoke", **{**TINY, **overrides})
  method = methods.build(config)
  batch = {"image": jnp.zeros((4, 8, 8, 1)), "label": jnp.zeros((4,), jnp.int32)}
  params, state = meta.unbox(method.init(jax.random.key(0), batch))
  # The UNet's output convs start at zero (identity blocks); perturb so predictions depend on inputs.
  params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape), params)
  return method, params, state


def test_schedules():
  for kind in ("linear", "cosine"):
    b = beta_schedule(kind, 1000)
    abar = np.cumprod(1 - b)
    assert b.shape == (1000,) and np.all(b > 0) and np.all(b < 1) and np.all(np.diff(abar) < 0)
    assert abar[-1] < 1e-4  # x_T is (almost) pure noise
  np.testing.assert_allclose(beta_schedule("linear", 1000)[[0, -1]], [1e-4, 0.02])
  assert list(timestep_sequence(10, 10)) == list(range(9, -1, -1))
  assert list(timestep_sequence(1000, 4)) == [999, 666, 333, 0]
  assert list(timestep_sequence(1000, 1)) == [999]  # one step starts from pure noise
  with pytest.raises(ArtjaxError, match="steps"):
    timestep_sequence(10, 11)
  with pytest.raises(ArtjaxError, match="steps"):
    timestep_sequence(10, 0)
  with pytest.raises(ArtjaxError, match="schedule"):
    beta_schedule("quadratic", 10)


def test_unet_shapes_and_conditioning():
  method, params, state = build(**{"model.num_classes": 3})
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  out = method.model.apply({"params": params}, x, jnp.array([0, 5]), jnp.array([0, 1]))
  assert out.shape == x.shape
  other = method.model.apply({"params": params}, x, jnp.array([0, 5]), jnp.array([2, 1]))
  assert not np.allclose(out[0], other[0]) and np.allclose(out[1], other[1])  # labels act per example


def test_loss_decreases_on_a_fixed_batch():
  method, params, state = build(**{"optimizer.schedule": "constant", "optimizer.warmup_steps": 0,
                                   "optimizer.lr": 3e-3})
  opt = method.init_opt_state(params)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 1)), jnp.float32)
  batch = {"image": x, "label": jnp.zeros((8,), jnp.int32)}
  # Fixed rng: the same timesteps and noise each step, so the loss itself must go down.
  step = jax.jit(lambda p, o: method.update(p, state, o, batch, jax.random.key(3)))
  losses = []
  for _ in range(30):
    params, _, opt, metrics = step(params, opt)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_ddim_eta1_all_steps_is_the_ddpm_sampler(prediction):
  method, params, state = build(**{"method.prediction": prediction})
  z = method.prior(jax.random.key(1), 3)
  rng = jax.random.key(2)
  ddpm = method.decode(params, state, z, rng, sampler="ddpm")
  ddim = method.decode(params, state, z, rng, sampler="ddim", steps=20, eta=1.0)
  np.testing.assert_allclose(ddpm, ddim, atol=2e-5)
  ddim0 = method.decode(params, state, z, rng, sampler="ddim", steps=20, eta=0.0)
  assert not np.allclose(ddim0, ddpm, atol=1e-3)  # eta matters: the identity above is not vacuous
  lo, hi = method.value_range
  assert ddpm.shape == (3, 8, 8, 1) and float(ddpm.min()) >= lo - 1e-5 and float(ddpm.max()) <= hi + 1e-5


def test_ddim_eta0_ignores_the_decode_key_and_sampling_is_deterministic():
  method, params, state = build()
  z = method.prior(jax.random.key(1), 2)
  a = method.decode(params, state, z, jax.random.key(5), sampler="ddim", steps=4)
  b = method.decode(params, state, z, jax.random.key(6), sampler="ddim", steps=4)
  np.testing.assert_array_equal(a, b)
  s1, s2 = (method.sample(params, state, jax.random.key(7), 2, sampler="ddpm") for _ in range(2))
  np.testing.assert_array_equal(s1, s2)
  s3 = method.sample(params, state, jax.random.key(8), 2, sampler="ddpm")
  assert not np.allclose(s1, s3)


def test_guidance_scale_0_is_the_unconditional_model_and_1_the_conditional():
  method, params, state = build(**{"model.num_classes": 3})
  z = method.prior(jax.random.key(1), 2)
  rng = jax.random.key(2)
  null = method.num_classes  # the label classifier-free guidance trains for "no label"
  uncond = method.decode(params, state, z, rng, label=0, guidance=0.0)  # the label has no effect at s=0
  method_uncond = method.decode(params, state, z, rng, guidance=None, label=None)
  cond = method.decode(params, state, z, rng, label=0, guidance=1.0)
  plain_cond = method.decode(params, state, z, rng, label=0)
  np.testing.assert_allclose(cond, plain_cond, atol=1e-5)
  # s=0 equals running the network with the null label throughout.
  labels_null = jnp.full((2,), null)
  x = z
  ts = timestep_sequence(method.num_timesteps, method.defaults["steps"])
  abar = np.concatenate([method.abar[ts], [1.0]])
  for i, t in enumerate(ts):
    x0, eps = method.predict_x0_eps(params, state, x, t, abar[i], labels_null, None)
    x = method._ddim_step(x, x0, eps, abar[i], abar[i + 1], jnp.zeros_like(x), 0.0)
  np.testing.assert_allclose(uncond, x, atol=1e-5)
  assert not np.allclose(uncond, method_uncond, atol=1e-3)  # balanced labels 0,1 are not "no label"
  with pytest.raises(ArtjaxError, match="out of range"):
    method.decode(params, state, z, rng, label=3)


def test_guidance_needs_a_conditional_model():
  method, params, state = build()
  z = method.prior(jax.random.key(1), 2)
  with pytest.raises(ArtjaxError, match="no sampling option"):
    method.sample(params, state, jax.random.key(0), 2, guidance=2.0)
  with pytest.raises(ArtjaxError, match="sampler"):
    method.decode(params, state, z, jax.random.key(0), sampler="euler")
  with pytest.raises(ArtjaxError, match="unconditional"):
    method.decode(params, state, z, jax.random.key(0), label=1)
  with pytest.raises(ArtjaxError, match="guidance needs"):
    build(**{"method.guidance": 2.0})
  with pytest.raises(ArtjaxError, match="sampler"):
    build(**{"method.sampler": "euler"})


def test_train_and_sample_cli_with_options(tmp_path):
  # v-prediction: with pure noise at t = T-1, x_0 = -v comes from the network (eps-prediction would divide
  # x_T by sqrt(abar) ~ 0 and clip it to the sign of the noise, hiding every option's effect).
  config = smoke_config("configs/diffusion/mnist_ddpm.py:smoke",
                        **{**TINY, "data.image_size": 8, "model.num_classes": 10, "method.prediction": "v"})
  from artjax.train.checkpoint import Checkpointer
  from artjax.train.loop import Trainer

  # Random weights everywhere (the UNet zero-initialises its output layers, so a few training steps
  # would leave labels and guidance with an effect below one grey level); EMA weights differ from raw.
  trainer = Trainer(config, tmp_path)
  state = trainer.init_state()
  noise = lambda tree, seed: jax.tree.map(  # noqa: E731
      lambda p: p + 0.2 * jax.random.normal(jax.random.key(seed), p.shape, p.dtype), tree)
  state = state.replace(params=noise(state.params, 1), ema_params=noise(state.params, 2))
  ckpt = Checkpointer(tmp_path)
  ckpt.save(4, state, trainer.config)
  ckpt.wait()
  ckpt.close()
  outs = {}
  runs = {"eights": ("--label", "8", "--guidance", "3"), "eights2": ("--label", "8", "--guidance", "3"),
          "threes": ("--label", "3", "--guidance", "3"), "eights_g1": ("--label", "8", "--guidance", "1"),
          "ddpm": ("--sampler", "ddpm", "--label", "8"), "ddim": ("--sampler", "ddim", "--label", "8"),
          "ddim_eta1": ("--sampler", "ddim", "--eta", "1", "--label", "8"),
          "ddim_2steps": ("--sampler", "ddim", "--steps", "2", "--label", "8"),
          "noema": ("--sampler", "ddim", "--label", "8", "--noema"),
          "interp": ("--interpolate", "4", "--num", "2")}
  for name, args in runs.items():
    p = run_cli("-m", "artjax.sample", "--workdir", str(tmp_path), "--out", str(tmp_path / f"{name}.npy"),
                "--num", "3", *args)
    assert p.returncode == 0, p.stderr
    outs[name] = np.load(tmp_path / f"{name}.npy").astype(np.int32)
  np.testing.assert_array_equal(outs["eights"], outs["eights2"])
  differ = lambda a, b: not np.array_equal(outs[a], outs[b])  # noqa: E731
  assert differ("eights", "threes")      # --label changes the class
  assert differ("eights", "eights_g1")   # --guidance changes the samples for one seed
  assert differ("ddpm", "ddim")          # --sampler
  assert differ("ddim", "ddim_eta1")     # --eta adds noise
  assert differ("ddim", "ddim_2steps")   # --steps
  assert differ("ddim", "noema")         # sampling uses the EMA weights by default; --noema the raw ones
  assert outs["interp"].shape == (8, 8, 8, 1)
  p = run_cli("-m", "artjax.sample", "--workdir", str(tmp_path), "--out", str(tmp_path / "x.npy"), "--label", "10")
  assert p.returncode == 2 and "out of range" in p.stderr and "Traceback" not in p.stderr


def test_labels_outside_num_classes_are_a_config_error(tmp_path):
  config = smoke_config("configs/diffusion/mnist_ddpm.py:smoke", **{**TINY, "model.num_classes": 5})
  from artjax.train.loop import Trainer

  with pytest.raises(ArtjaxError, match="num_classes=5"):
    Trainer(config, tmp_path)  # digits has labels 0..9
