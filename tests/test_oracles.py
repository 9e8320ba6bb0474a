"""Oracle tests: where a family's (or the optimizer's) maths is known exactly, check it exactly.

- Diffusion: a stand-in network that returns the true eps (or v) of a known x_0 must make every sampler
  return that x_0, keep every intermediate x_t distributed as q(x_t | x_0), and classifier-free guidance
  must combine per-class x_0's linearly; label dropout must happen at `method.cond_dropout`.
- Optimizers (artjax/optim.py): schedules against their closed forms, global-norm clipping, and AdamW's
  weight decay restricted to matrices.
Expected values are closed forms derived here, never numbers copied from a run.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from artjax import methods
from artjax.errors import ArtjaxError
from artjax.optim import make_optimizer, make_schedule
from conftest import smoke_config

T = 20  # training timesteps of the tiny diffusion configs
SHAPE = (8, 8, 1)
TINY = {"data.name": "digits", "data.image_size": 8, "model.attention_resolutions": (4,),
        "method.num_timesteps": T}


def diffusion(**overrides):
  return methods.build(smoke_config("configs/diffusion/mnist_ddpm.py:smoke", **{**TINY, **overrides}))


class Oracle:
  """Stands in for the denoising network (same `apply` interface as the Flax module the method calls).

  It knows the clean image x_0 (one per sample; with `table`, one per label, the null label included) and
  returns the exact target the network is trained on: eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t),
  or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0. Every x_t it is shown is recorded (with its t).
  """

  def __init__(self, method, x0=None, table=None):
    self.abar = jnp.asarray(method.abar, jnp.float32)
    self.prediction = method.prediction
    self.x0, self.table = x0, table
    self.seen = {}  # t -> the x_t the sampler asked about at timestep t

  def _record(self, t, xt):
    self.seen[int(np.asarray(t)[0])] = np.asarray(xt)

  def apply(self, variables, xt, t, labels=None, **kwargs):
    del variables, kwargs
    jax.debug.callback(self._record, t, xt)
    a = self.abar[t][:, None, None, None]
    x0 = self.x0 if self.table is None else self.table[labels]
    eps = (xt - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
    return eps if self.prediction == "eps" else jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0


def clean_images(rng, num, bound=0.9):
  """x_0 inside the data range (-1, 1), so the sampler's clipping of its x_0 prediction is a no-op."""
  return jax.random.uniform(jax.random.key(rng), (num,) + SHAPE, minval=-bound, maxval=bound)


# (schedule, prediction, sampler, steps, eta), covering every pair of schedule, parametrization and sampler
# (DDPM over the full chain, DDIM deterministic (eta=0, respaced) and fully stochastic (eta=1, all steps));
# plus a respaced DDPM chain and DDIM at eta=0.5.
CASES = [("linear", "eps", "ddpm", T, None), ("cosine", "v", "ddpm", T, None),
         ("linear", "v", "ddim", 7, 0.0), ("cosine", "eps", "ddim", 7, 0.0),
         ("linear", "v", "ddim", T, 1.0), ("cosine", "eps", "ddim", T, 1.0),
         ("cosine", "v", "ddpm", 7, None), ("linear", "eps", "ddim", 7, 0.5)]


@pytest.mark.parametrize("schedule,prediction,sampler,steps,eta", CASES)
def test_an_exact_denoiser_makes_every_sampler_return_x0(schedule, prediction, sampler, steps, eta):
  """With the true eps/v as its network, each sampler's output is the x_0 the oracle knows (float32
  rounding only), whatever the schedule, parametrization, sampler, step count or eta. On the way:

  - DDIM with eta=0 is deterministic: every x_t it visits is sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with
    the one eps that x_T implies (Song et al. 2021, eq. 12).
  - A stochastic chain started from N(0, I) visits x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)
    at every t (DDPM posterior sampling and DDIM at any eta preserve the forward marginals): the residuals
    r_t = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t) are standard normal. Consecutive visited steps
    t > s have corr(r_t, r_s) = sqrt(1 - sigma^2 / (1 - abar_s)) = sqrt(1 - eta^2 (1 - abar_t / abar_s) /
    (1 - abar_t)), with sigma as Song et al. define it (eq. 16) and eta=1 for DDPM, where it is the forward
    chain's sqrt((abar_t / abar_s) (1 - abar_s) / (1 - abar_t)) (x_t = sqrt(abar_t / abar_s) x_s + noise):
    this pins down the update's coefficients, not just its variance.
    Checked per step within 5 standard errors over 256 images of 64 pixels each.
  """
  method = diffusion(**{"method.schedule": schedule, "method.prediction": prediction})
  num = 256
  x0 = clean_images(0, num)
  oracle = method.model = Oracle(method, x0=x0)
  xT = method.prior(jax.random.key(1), num)
  out = method.decode({}, {}, xT, jax.random.key(2), sampler=sampler, steps=steps, eta=eta)
  assert out.shape == x0.shape
  np.testing.assert_allclose(out, x0, rtol=0, atol=1e-5)

  abar = method.abar
  ts = sorted(oracle.seen, reverse=True)
  assert len(ts) == steps and ts[0] == T - 1 and ts[-1] == 0
  np.testing.assert_array_equal(oracle.seen[T - 1], xT)
  x0 = np.asarray(x0, np.float64)
  if eta == 0.0:
    eps = (np.asarray(xT, np.float64) - math.sqrt(abar[T - 1]) * x0) / math.sqrt(1 - abar[T - 1])
    for t in ts:
      expected = math.sqrt(abar[t]) * x0 + math.sqrt(1 - abar[t]) * eps
      np.testing.assert_allclose(oracle.seen[t], expected, rtol=0, atol=1e-4, err_msg=f"t={t}")
    return
  assert abar[T - 1] < 1e-4  # x_T ~ N(0, I) is (to this precision) q(x_T | x_0), so the chain starts right
  r = {t: ((oracle.seen[t] - math.sqrt(abar[t]) * x0) / math.sqrt(1 - abar[t])).ravel() for t in ts}
  n = r[ts[0]].size
  for t in ts:
    assert abs(r[t].mean()) < 5 / math.sqrt(n), (t, r[t].mean())
    assert abs(r[t].var() - 1) < 5 * math.sqrt(2 / n), (t, r[t].var())
  eta = 1.0 if sampler == "ddpm" else eta
  for t, s in zip(ts[:-1], ts[1:]):
    rho = math.sqrt(1 - eta ** 2 * (1 - abar[t] / abar[s]) / (1 - abar[t]))
    corr = np.corrcoef(r[t], r[s])[0, 1]
    assert abs(corr - rho) < 5 * (1 - rho ** 2) / math.sqrt(n) + 1e-4, (t, s, corr, rho)


@pytest.mark.parametrize("sampler,prediction", [("ddpm", "eps"), ("ddim", "v")])
def test_guidance_extrapolates_the_oracles_x0(prediction, sampler):
  """Classifier-free guidance on an oracle that knows one x_0 per class (and one for the null label):
  eps and v are affine in x_0 with the same x_t term, so out_u + s (out_c - out_u) is the target of
  x_0 = x0_u + s (x0_c - x0_u), and the sampler returns that, clipped to the data range (s=3 leaves it;
  a swapped conditional/unconditional pair would give x0_c + 3 (x0_u - x0_c)). Without guidance each sample
  is its own label's x_0, and the null label (num_classes) is the unconditional one."""
  classes = 3
  method = diffusion(**{"model.num_classes": classes, "method.prediction": prediction})
  table = jnp.concatenate([clean_images(9, classes, bound=0.4), clean_images(10, 1, bound=0.2)])
  method.model = Oracle(method, table=table)
  labels = np.array([2, 0, 1, 2])
  latents = method.prior(jax.random.key(11), len(labels))
  cond, uncond = np.asarray(table)[labels], np.asarray(table)[classes]
  for guidance in (None, 3.0):
    out = method.decode({}, {}, latents, jax.random.key(12), sampler=sampler, steps=T, eta=1.0, label=labels,
                        guidance=guidance)
    s = 1.0 if guidance is None else guidance
    expected = np.clip(uncond + s * (cond - uncond), *method.value_range)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5, err_msg=f"guidance={guidance}")
  assert np.any(np.abs(uncond + 3 * (cond - uncond)) > 1)  # the clipping above is exercised


class LabelRecorder:
  """Stands in for the network in training: records the labels it is given, predicts zeros."""

  def __init__(self):
    self.labels = []

  def apply(self, variables, xt, t, labels=None, **kwargs):
    del variables, t, kwargs
    self.labels.append(None if labels is None else np.asarray(labels))
    return jnp.zeros_like(xt)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_cfg_label_dropout_happens_at_the_configured_rate(rate):
  """In training, each label is replaced by the null label (num_classes) independently with probability
  method.cond_dropout: over n labels the dropped fraction is within 4 binomial standard deviations of the
  rate (exactly 0 / 1 at the ends), in every class, and kept labels reach the network unchanged."""
  classes, n = 5, 20000
  method = diffusion(**{"model.num_classes": classes, "method.cond_dropout": rate})
  recorder = method.model = LabelRecorder()
  given = jnp.arange(n, dtype=jnp.int32) % classes
  batch = {"image": jnp.zeros((n,) + SHAPE), "label": given}
  method.loss({}, {}, batch, jax.random.key(13))
  (seen,) = recorder.labels
  given = np.asarray(given)
  dropped = seen == classes
  assert np.all(dropped | (seen == given))  # a label is either kept as it was or made the null label
  tol = 4 * math.sqrt(rate * (1 - rate) / n)
  assert abs(dropped.mean() - rate) <= tol, (dropped.mean(), rate)
  per_class_tol = 4 * math.sqrt(rate * (1 - rate) / (n / classes))
  for c in range(classes):
    assert abs(dropped[given == c].mean() - rate) <= per_class_tol, (c, dropped[given == c].mean())
  # Another key drops other labels (the mask is drawn per step, not fixed).
  method.loss({}, {}, batch, jax.random.key(14))
  if 0 < rate < 1:
    assert not np.array_equal(recorder.labels[1] == classes, dropped)


def test_unconditional_diffusion_trains_without_labels():
  """With model.num_classes=0 the network is given no labels at all (None), so nothing is dropped."""
  method = diffusion(**{"model.num_classes": 0, "method.cond_dropout": 0.5})
  recorder = method.model = LabelRecorder()
  method.loss({}, {}, {"image": jnp.zeros((8,) + SHAPE)}, jax.random.key(15))
  assert recorder.labels == [None]


# -- optimizers (artjax/optim.py) ------------------------------------------------------------------

def opt_config(**kw):
  return ml_collections.ConfigDict(kw)


def lr_at(schedule, step):
  return float(schedule(step)) if callable(schedule) else float(schedule)


def sgd_lrs(cfg, total_steps, num):
  """The learning rates SGD actually applies at its first `num` updates (unit gradient on one scalar)."""
  tx = make_optimizer(opt_config(name="sgd", **cfg), total_steps)
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  lrs = []
  for _ in range(num):
    updates, state = tx.update({"w": jnp.ones(())}, state, params)
    lrs.append(-float(updates["w"]))
  return lrs


def test_constant_schedule_with_and_without_warmup():
  """constant: lr at every step; with warmup_steps=W, lr * min(step / W, 1) (linear from 0). The optimizer's
  k-th update (k = 0, 1, ...) uses the schedule at step k."""
  lr, w = 0.3, 4
  assert [lr_at(make_schedule(opt_config(lr=lr), 100), k) for k in (0, 5, 1000)] == [lr] * 3
  assert [lr_at(make_schedule(opt_config(lr=lr, schedule="constant", warmup_steps=0), 100), k)
          for k in (0, 7)] == [lr] * 2
  sched = make_schedule(opt_config(lr=lr, schedule="constant", warmup_steps=w), 100)
  for k in (0, 1, 2, 3, 4, 5, 50, 1000):
    assert lr_at(sched, k) == pytest.approx(lr * min(k / w, 1.0), rel=1e-6, abs=1e-9), k
  applied = sgd_lrs(dict(lr=lr, schedule="constant", warmup_steps=w), 100, 7)
  np.testing.assert_allclose(applied, [lr * min(k / w, 1.0) for k in range(7)], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["cosine", "warmup_cosine"])
@pytest.mark.parametrize("warmup", [0, 10])
def test_cosine_schedules_follow_the_closed_form(kind, warmup):
  """cosine / warmup_cosine: linear warmup from 0 to lr over warmup_steps W, then
  end + (lr - end) (1 + cos(pi (k - W) / (total - W))) / 2, so lr at the end of warmup, (lr + end) / 2
  halfway, end_lr at total_steps and after it."""
  lr, end, total = 0.2, 0.01, 110
  cfg = dict(lr=lr, schedule=kind, warmup_steps=warmup, end_lr=end)
  sched = make_schedule(opt_config(**cfg), total)

  def closed_form(k):
    if k < warmup:
      return lr * k / warmup
    frac = min(k - warmup, total - warmup) / (total - warmup)
    return end + (lr - end) * (1 + math.cos(math.pi * frac)) / 2

  steps = sorted({0, 1, warmup // 2, warmup, warmup + 1, (warmup + total) // 2, total - 1, total, total + 50})
  for k in steps:
    assert lr_at(sched, k) == pytest.approx(closed_form(k), rel=1e-5, abs=1e-7), k
  assert lr_at(sched, warmup) == pytest.approx(lr, rel=1e-6)
  assert lr_at(sched, total) == pytest.approx(end, rel=1e-5)
  assert lr_at(sched, (warmup + total) / 2) == pytest.approx((lr + end) / 2, rel=1e-5)
  np.testing.assert_allclose(sgd_lrs(cfg, total, 12), [closed_form(k) for k in range(12)], rtol=1e-5, atol=1e-7)


def test_unknown_schedule_optimizer_or_decay_target_is_an_artjax_error():
  """Names outside the documented choices fail with ArtjaxError naming the field, not deep in optax."""
  with pytest.raises(ArtjaxError, match="schedule"):
    make_schedule(opt_config(lr=0.1, schedule="linear_decay"), 10)
  with pytest.raises(ArtjaxError, match="schedule"):
    make_optimizer(opt_config(lr=0.1, schedule="step"), 10)
  with pytest.raises(ArtjaxError, match="name"):
    make_optimizer(opt_config(lr=0.1, name="lamb"), 10)
  with pytest.raises(ArtjaxError, match="weight_decay_on"):
    make_optimizer(opt_config(lr=0.1, name="adamw", weight_decay_on="kernels"), 10)


PARAMS = {  # a Dense and a Conv kernel (matrices), a bias, a LayerNorm scale and a scalar gain
    "Dense_0": {"kernel": jnp.full((3, 4), 2.0), "bias": jnp.full((4,), 0.5)},
    "Conv_0": {"kernel": jnp.linspace(-1.0, 1.0, 3 * 3 * 2 * 4).reshape(3, 3, 2, 4)},
    "LayerNorm_0": {"scale": jnp.full((4,), 1.5)},
    "gain": jnp.array(3.0),
}


@pytest.mark.parametrize("decay_on", ["matrices", "all", None])
def test_adamw_weight_decay_touches_only_what_it_should(decay_on):
  """AdamW with zero gradients moves parameters by weight decay alone: each decayed leaf is multiplied by
  exactly (1 - lr * wd) per step; with weight_decay_on='matrices' leaves with ndim < 2 (biases, norm
  scales, scalars) stay bit-for-bit unchanged, with 'all' (the default when unset) every leaf decays."""
  lr, wd, num_steps = 0.1, 0.05, 5
  cfg = dict(name="adamw", lr=lr, weight_decay=wd)
  if decay_on is not None:
    cfg["weight_decay_on"] = decay_on
  tx = make_optimizer(opt_config(**cfg), 100)
  params = PARAMS
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  for _ in range(num_steps):
    updates, state = tx.update(zeros, state, params)
    new = optax.apply_updates(params, updates)
    for (path, p), q in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(new)):
      name = jax.tree_util.keystr(path)
      if decay_on == "matrices" and p.ndim < 2:
        np.testing.assert_array_equal(q, p, err_msg=name)
      else:
        np.testing.assert_allclose(q, p * (1 - lr * wd), rtol=1e-6, err_msg=name)
    params = new
  for p0, p in zip(jax.tree.leaves(PARAMS), jax.tree.leaves(params)):  # and after all steps, compounded
    decays = decay_on != "matrices" or p0.ndim >= 2
    np.testing.assert_allclose(p, p0 * (1 - lr * wd) ** num_steps if decays else p0, rtol=1e-5)


def test_global_norm_clipping():
  """grad_clip_norm=c: a gradient (spread over several leaves) of global norm 10 > c is rescaled to norm c,
  so SGD's update is -lr * c * g / |g| (norm exactly lr * c); one of norm 0.5 < c is applied untouched
  (-lr * g); with grad_clip_norm=0 (off) the norm-10 gradient is not clipped."""
  lr = 0.1
  big = {"a": jnp.array([6.0, 0.0]), "b": jnp.array([[8.0]])}  # global norm sqrt(36 + 64) = 10
  small = jax.tree.map(lambda g: g / 20, big)  # global norm 0.5
  params = jax.tree.map(jnp.zeros_like, big)

  def update(clip, grads):
    tx = make_optimizer(opt_config(name="sgd", lr=lr, grad_clip_norm=clip), 10)
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates

  clipped = update(1.0, big)
  assert float(optax.tree_utils.tree_norm(clipped)) == pytest.approx(lr * 1.0, rel=1e-6)
  for u, g in zip(jax.tree.leaves(clipped), jax.tree.leaves(big)):
    np.testing.assert_allclose(u, -lr * g / 10, rtol=1e-6)
  for u, g in zip(jax.tree.leaves(update(1.0, small)), jax.tree.leaves(small)):
    np.testing.assert_array_equal(u, -lr * g)
  for u, g in zip(jax.tree.leaves(update(0.0, big)), jax.tree.leaves(big)):
    np.testing.assert_allclose(u, -lr * g, rtol=1e-6)
  assert float(optax.tree_utils.tree_norm(update(2.5, big))) == pytest.approx(lr * 2.5, rel=1e-6)
