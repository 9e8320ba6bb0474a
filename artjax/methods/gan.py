"""GANs: alternating discriminator / generator updates with the non-saturating (or hinge) loss; optionally class-conditional."""

import jax
import jax.numpy as jnp
import optax

from artjax import models
from artjax.errors import ArtjaxError
from artjax.methods import METHODS
from artjax.methods.base import Method, apply_module, sample_labels, split_variables
from artjax.optim import make_optimizer

G, D = "generator", "discriminator"


def discriminator_loss(kind, real_logits, fake_logits):
  if kind == "non_saturating":
    return jax.nn.softplus(-real_logits).mean() + jax.nn.softplus(fake_logits).mean()
  return jax.nn.relu(1.0 - real_logits).mean() + jax.nn.relu(1.0 + fake_logits).mean()  # hinge


def generator_loss(kind, fake_logits):
  if kind == "non_saturating":
    return jax.nn.softplus(-fake_logits).mean()  # -log D(G(z)), Goodfellow et al.'s practical form
  return -fake_logits.mean()  # hinge


@METHODS.register("gan")
class GAN(Method):
  """config.method: latent_dim, loss ('non_saturating' | 'hinge'); config.optimizer_d overrides D's optimizer.

  config.model.num_classes > 0 makes it class-conditional: training reads batch["label"] (fakes are
  made for the real batch's labels), and sampling takes the `label` option.
  """

  def __init__(self, config):
    super().__init__(config)
    nets = models.build(config.model)
    self.gen, self.disc = nets[G], nets[D]
    self.latent_dim = config.method.latent_dim
    self.num_classes = int(config.model.get("num_classes", 0))
    if self.num_classes < 0:
      raise ArtjaxError(f"model.num_classes must be >= 0 (0: unconditional), got {self.num_classes}")
    self.sample_options = ("label",) if self.num_classes else ()
    self.loss_kind = config.method.get("loss", "non_saturating")
    if self.loss_kind not in ("non_saturating", "hinge"):
      raise ArtjaxError(f"unknown method.loss {self.loss_kind!r}; known: non_saturating, hinge")
    self.tx = {G: make_optimizer(config.optimizer, config.total_steps),
               D: make_optimizer(config.get("optimizer_d", config.optimizer), config.total_steps)}

  def cond(self, label):
    """Keyword arguments that condition the networks on `label` (none when unconditional)."""
    return {"label": label} if self.num_classes else {}

  def batch_labels(self, batch):
    """The batch's labels when conditional (checked present), else None."""
    if not self.num_classes:
      return None
    if "label" not in batch:
      raise ArtjaxError(f"model.num_classes={self.num_classes} (class-conditional) but the data source "
                        f"{self.config.data.get('name', '?')!r} yields no labels")
    return batch["label"]

  def init(self, rng, batch):
    rg, rd = jax.random.split(rng)
    n = batch["image"].shape[0]
    self.batch_labels(batch)  # fail at start-up, not in the first step, if labels are missing
    z = jnp.zeros((n, self.latent_dim))
    y = jnp.zeros((n,), jnp.int32)
    pg, sg = split_variables(self.gen.init(rg, z, train=False, **self.cond(y)))
    pd, sd = split_variables(self.disc.init(rd, batch["image"], train=False, **self.cond(y)))
    return {G: pg, D: pd}, {G: sg, D: sd}

  def init_opt_state(self, params):
    return {k: self.tx[k].init(params[k]) for k in (G, D)}

  def update(self, params, model_state, opt_state, batch, rng):
    real = batch["image"]
    c = self.cond(self.batch_labels(batch))
    z = jax.random.normal(rng, (real.shape[0], self.latent_dim))
    # One generator forward serves both updates: its VJP is reused for the generator step.
    fake, gen_vjp, g_state = jax.vjp(
        lambda p: apply_module(self.gen, p, model_state[G], z, train=True, **c), params[G], has_aux=True)

    def d_loss_fn(pd):
      # Real and fake go through D as separate batches (as in the DCGAN reference code): own BN stats.
      real_logits, s = apply_module(self.disc, pd, model_state[D], real, train=True, **c)
      fake_logits, s = apply_module(self.disc, pd, s, jax.lax.stop_gradient(fake), train=True, **c)
      loss = discriminator_loss(self.loss_kind, real_logits, fake_logits)
      return loss, (s, jax.nn.sigmoid(real_logits).mean(), jax.nn.sigmoid(fake_logits).mean())

    (d_loss, (d_state, d_real, d_fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(params[D])
    d_updates, d_opt = self.tx[D].update(d_grads, opt_state[D], params[D])
    pd = optax.apply_updates(params[D], d_updates)

    def g_loss_fn(x):  # D's statistics from this pass are discarded: D keeps those of its own step.
      logits, _ = apply_module(self.disc, pd, d_state, x, train=True, **c)
      return generator_loss(self.loss_kind, logits)

    g_loss, dfake = jax.value_and_grad(g_loss_fn)(fake)
    (g_grads,) = gen_vjp(dfake)
    g_updates, g_opt = self.tx[G].update(g_grads, opt_state[G], params[G])
    pg = optax.apply_updates(params[G], g_updates)

    metrics = {"d_loss": d_loss, "g_loss": g_loss, "d_real": d_real, "d_fake": d_fake,
               "grad_norm_d": optax.tree_utils.tree_norm(d_grads), "grad_norm_g": optax.tree_utils.tree_norm(g_grads)}
    return {G: pg, D: pd}, {G: g_state, D: d_state}, {G: g_opt, D: d_opt}, metrics

  def prior(self, rng, num):
    return jax.random.normal(rng, (num, self.latent_dim))

  def decode(self, params, model_state, latents, rng, label=None):
    if self.num_classes:
      c = self.cond(sample_labels(label, latents.shape[0], self.num_classes))
    elif label is not None:
      raise ArtjaxError("this GAN is unconditional (model.num_classes=0): it takes no label")
    else:
      c = {}
    out, _ = apply_module(self.gen, params[G], model_state[G], latents, train=False, **c)
    return out
