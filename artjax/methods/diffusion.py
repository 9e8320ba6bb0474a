"""Diffusion (DDPM, Ho et al. 2020): noise-prediction training, DDPM ancestral and DDIM samplers, CFG.

Notation: abar_t = prod_{s<=t} (1 - beta_s) for t = 0..T-1; x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.
The network predicts eps (`prediction='eps'`) or v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho
2022). Both samplers run a timestep subsequence t_S > ... > t_1 (all T steps, or S evenly spaced ones)
inside one `lax.scan`; each step first predicts x_0 (clipped to the data range) and then
- DDPM: samples the posterior q(x_prev | x_t, x_0) of the respaced chain (Nichol & Dhariwal 2021),
- DDIM: x_prev = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z (Song et al. 2021),
so DDIM with eta=1 over all T steps is exactly the DDPM sampler (tested).
Classifier-free guidance (Ho & Salimans 2022): labels are dropped to the null label with probability
`cond_dropout` in training; sampling with scale s uses out_uncond + s (out_cond - out_uncond), so s=0 is
the unconditional model and s=1 the conditional one.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from artjax import options as opts
from artjax.errors import ArtjaxError
from artjax.methods import METHODS, conditioning
from artjax.methods.base import SingleLossMethod, apply_module, split_variables


def beta_schedule(kind: str, num_timesteps: int) -> np.ndarray:
  """float64 betas: 'linear' (DDPM: 1e-4 .. 0.02 scaled to T=1000) or 'cosine' (Nichol & Dhariwal 2021)."""
  if kind == "linear":
    scale = 1000.0 / num_timesteps  # as improved-diffusion: short chains (tests) still end near pure noise
    return np.clip(np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64), 0.0, 0.999)
  if kind == "cosine":
    s = 0.008
    f = lambda t: np.cos((t / num_timesteps + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    t = np.arange(num_timesteps + 1, dtype=np.float64)
    return np.clip(1 - f(t[1:]) / f(t[:-1]), 0.0, 0.999)
  raise ArtjaxError(f"unknown method.schedule {kind!r}; known: linear, cosine")


def timestep_sequence(num_timesteps: int, steps: int) -> np.ndarray:
  """The sampler's timesteps, descending: all T, or `steps` evenly spaced ones ending at t=0."""
  if not 1 <= steps <= num_timesteps:
    raise ArtjaxError(f"sampler steps must be in 1..{num_timesteps} (the training timesteps), got {steps}")
  # From T-1 down to 0 (one step: [T-1], i.e. denoise from pure noise in one jump).
  ts = np.round(np.linspace(num_timesteps - 1, 0, steps)).astype(np.int32)
  return np.unique(ts)[::-1].copy() if steps > 1 else ts


@METHODS.register("diffusion")
class Diffusion(SingleLossMethod):
  """config.method: num_timesteps, schedule, prediction ('eps'|'v'), cond_dropout, sampler, sample_steps, eta."""

  OPTIONS = (
      opts.Option("sampler", "str", "Sampler: ddpm (ancestral) or ddim; default: method.sampler.",
                  choices=("ddpm", "ddim")),
      opts.Option("steps", "int", "Sampler steps (at most the training timesteps); default: all T for ddpm, "
                  "method.sample_steps for ddim.", minimum=1, limit="max_steps"),
      opts.Option("eta", "float", "DDIM eta: 0 deterministic, 1 DDPM-like noise; default: method.eta.",
                  minimum=0.0, maximum=1.0),
      opts.LABEL,
      opts.Option("guidance", "float", "Classifier-free guidance scale (0: unconditional, 1: conditional, "
                  ">1: stronger); default: method.guidance or none.", minimum=0.0),
  )

  def __init__(self, config):
    super().__init__(config)
    m = config.method
    self.num_timesteps = m.get("num_timesteps", 1000)
    self.prediction = m.get("prediction", "eps")
    if self.prediction not in ("eps", "v"):
      raise ArtjaxError(f"unknown method.prediction {self.prediction!r}; known: eps, v")
    self.abar = np.cumprod(1.0 - beta_schedule(m.get("schedule", "linear"), self.num_timesteps))
    self.num_classes = conditioning.num_classes(config)
    self.cond_dropout = m.get("cond_dropout", 0.1) if self.num_classes else 0.0
    self.defaults = dict(sampler=m.get("sampler", "ddim"), steps=m.get("sample_steps", 50), eta=m.get("eta", 0.0),
                         guidance=m.get("guidance", None))
    self.sample_options = ("sampler", "steps", "eta") + (("label", "guidance") if self.num_classes else ())
    # Checked now, not at the first sample grid after `sample_every` training steps.
    if self.defaults["sampler"] not in ("ddpm", "ddim"):
      raise ArtjaxError(f"unknown method.sampler {self.defaults['sampler']!r}; known: ddpm, ddim")
    timestep_sequence(self.num_timesteps, self.defaults["steps"])
    if self.defaults["guidance"] is not None and not self.num_classes:
      raise ArtjaxError("method.guidance needs a class-conditional model (model.num_classes > 0)")
    self.check_options({k: v for k, v in self.defaults.items() if k in self.sample_options})
    self.shape = (config.data.image_size, config.data.image_size, config.data.channels)
    self.value_range = tuple(config.data.get("value_range", (-1.0, 1.0)))

  def resolve_options(self, options: dict) -> dict:
    d = self.defaults
    sampler = options.get("sampler") or d["sampler"]
    steps = options.get("steps")
    if steps is None:  # DDPM defaults to the full chain; DDIM to config.method.sample_steps
      steps = self.num_timesteps if sampler == "ddpm" else d["steps"]
    out = {"sampler": sampler, "steps": int(steps)}
    if sampler == "ddim":  # DDPM ignores eta
      out["eta"] = float(d["eta"] if options.get("eta") is None else options["eta"])
    guidance = d["guidance"] if options.get("guidance") is None else options["guidance"]
    if self.num_classes and guidance is not None:
      out["guidance"] = float(guidance)
    if options.get("label") is not None:
      out["label"] = options["label"]
    return out

  def options(self):
    # steps is bounded by this model's training timesteps
    return tuple(dataclasses.replace(o, maximum=self.num_timesteps) if o.name == "steps" else o
                 for o in super().options())

  # -- training ---------------------------------------------------------------------------------
  def init(self, rng, batch):
    x = batch["image"]
    labels = conditioning.init_labels(self.config, batch)
    return split_variables(self.model.init(rng, x, jnp.zeros(x.shape[:1]), labels))

  def loss(self, params, model_state, batch, rng):
    x0, labels = batch["image"], conditioning.batch_labels(self.config, batch)
    t_rng, noise_rng, drop_rng, dropout_rng = jax.random.split(rng, 4)
    t = jax.random.randint(t_rng, x0.shape[:1], 0, self.num_timesteps)
    eps = jax.random.normal(noise_rng, x0.shape)
    abar = jnp.asarray(self.abar, jnp.float32)[t][:, None, None, None]
    xt = jnp.sqrt(abar) * x0 + jnp.sqrt(1 - abar) * eps
    if labels is not None:  # classifier-free guidance: train the null label too
      drop = jax.random.bernoulli(drop_rng, self.cond_dropout, t.shape)
      labels = jnp.where(drop, self.num_classes, labels)
    out, model_state = apply_module(self.model, params, model_state, xt, t, labels, train=True,
                                    rngs={"dropout": dropout_rng})
    target = eps if self.prediction == "eps" else jnp.sqrt(abar) * eps - jnp.sqrt(1 - abar) * x0
    loss = jnp.mean((out - target) ** 2)
    return loss, (model_state, {})

  # -- sampling ---------------------------------------------------------------------------------
  def prior(self, rng, num):
    return jax.random.normal(rng, (num,) + self.shape)

  def predict_x0_eps(self, params, model_state, xt, t, abar, labels, guidance):
    """(x_0 clipped to the data range, the eps consistent with it) at integer timestep t (scalar)."""
    tt = jnp.full(xt.shape[:1], t)
    if labels is not None and guidance is not None:
      # One batched call for the conditional and the unconditional (null-label) predictions.
      both, _ = apply_module(self.model, params, model_state, jnp.concatenate([xt, xt]),
                             jnp.concatenate([tt, tt]),
                             jnp.concatenate([labels, jnp.full_like(labels, self.num_classes)]))
      cond, uncond = jnp.split(both, 2)
      out = uncond + guidance * (cond - uncond)
    else:
      out, _ = apply_module(self.model, params, model_state, xt, tt, labels)
    if self.prediction == "eps":
      x0 = (xt - jnp.sqrt(1 - abar) * out) / jnp.sqrt(abar)
    else:
      x0 = jnp.sqrt(abar) * xt - jnp.sqrt(1 - abar) * out
    x0 = jnp.clip(x0, *self.value_range)
    # eps recomputed from the clipped x_0 keeps x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps exact,
    # which is what makes DDIM(eta=1, all steps) and DDPM the same chain.
    return x0, (xt - jnp.sqrt(abar) * x0) / jnp.sqrt(1 - abar)

  def decode(self, params, model_state, latents, rng, *, sampler=None, steps=None, eta=None, label=None,
             guidance=None):
    d = self.defaults
    sampler = sampler or d["sampler"]
    # DDPM defaults to the full chain; DDIM to config.method.sample_steps.
    if steps is None:
      steps = self.num_timesteps if sampler == "ddpm" else d["steps"]
    eta = d["eta"] if eta is None else eta
    guidance = d["guidance"] if guidance is None else guidance
    if sampler not in ("ddpm", "ddim"):
      raise ArtjaxError(f"unknown sampler {sampler!r}; known: ddpm, ddim")
    ts = timestep_sequence(self.num_timesteps, steps)
    abar_t = self.abar[ts]
    abar_prev = np.concatenate([self.abar[ts[1:]], [1.0]])
    labels = conditioning.sampling_labels(self.config, label, latents.shape[0])
    if labels is None and guidance is not None:
      raise ArtjaxError("guidance needs a class-conditional model (model.num_classes > 0)")
    step_fn = self._ddpm_step if sampler == "ddpm" else self._ddim_step
    xs = (jnp.asarray(ts), jnp.asarray(abar_t, jnp.float32), jnp.asarray(abar_prev, jnp.float32),
          jnp.arange(len(ts)))

    def body(x, args):
      t, a, a_prev, i = args
      x0, eps = self.predict_x0_eps(params, model_state, x, t, a, labels, guidance)
      z = jax.random.normal(jax.random.fold_in(rng, i), x.shape)
      return step_fn(x, x0, eps, a, a_prev, z, eta), None

    x, _ = jax.lax.scan(body, latents, xs)
    return x

  @staticmethod
  def _ddpm_step(x, x0, eps, a, a_prev, z, eta):
    """A draw from the posterior q(x_prev | x_t, x_0) of the (respaced) chain; eta is unused."""
    del eps, eta
    beta = 1 - a / a_prev  # the respaced chain's beta for this step
    mean = (jnp.sqrt(a_prev) * beta / (1 - a)) * x0 + (jnp.sqrt(1 - beta) * (1 - a_prev) / (1 - a)) * x
    var = beta * (1 - a_prev) / (1 - a)
    return mean + jnp.sqrt(var) * z

  @staticmethod
  def _ddim_step(x, x0, eps, a, a_prev, z, eta):
    del x
    sigma = eta * jnp.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    return jnp.sqrt(a_prev) * x0 + jnp.sqrt(jnp.maximum(1 - a_prev - sigma ** 2, 0.0)) * eps + sigma * z
