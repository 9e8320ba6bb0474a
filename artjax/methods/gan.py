"""GANs: alternating discriminator / generator updates with the non-saturating (or hinge) loss; optionally class-conditional."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from artjax import models
from artjax import options as opts
from artjax.errors import ArtjaxError
from artjax.methods import METHODS, conditioning
from artjax.methods.base import Method, apply_module, split_variables
from artjax.optim import make_optimizer

G, D = "generator", "discriminator"

# Defaults of the BatchNorm re-estimation for sampling (`GAN.sampling_state`); see experiments/README.md.
BN_RECALIBRATION_BATCHES = 16
_RECAL = "bn_recalibration"  # a scratch collection: the per-batch statistics sown by `_sow_bn_input_stats`


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

  BatchNorm statistics for EMA weights ("standing statistics", Brock et al. 2019, BigGAN): the
  generator's running BatchNorm statistics are collected by the *raw* weights during training, so they
  do not match the EMA weights samples use. `sampling_state(params, model_state, rng)` re-estimates
  them for `params[G]`: the generator runs in train mode on K fresh batches of z (class-balanced labels
  when conditional), and each BatchNorm's (mean, var) becomes the plain average over the K batches of
  its input's per-batch mean and (biased) per-batch variance -- what the running statistics estimate,
  without the momentum's bias towards the last batches or the raw weights. Settings, config.method:
    bn_recalibration_batches     K (default 16); 0 disables it (model_state is returned unchanged);
    bn_recalibration_batch_size  z per batch (default: the batch the generator trains on,
                                 config.batch_size, or its n_critic-th for WGAN-GP): the mean of per-batch
                                 variances depends on the batch size, and training normalized with those.
  Pure and jittable; its randomness comes from `rng` only. The discriminator's state is left as is.
  The caller decides when to use it (the sampler does, for EMA weights).
  """

  OPTIONS = (opts.LABEL,)

  def __init__(self, config):
    super().__init__(config)
    nets = models.build(config.model)
    self.gen, self.disc = nets[G], nets[D]
    self.latent_dim = config.method.latent_dim
    self.num_classes = conditioning.num_classes(config)
    self.sample_options = ("label",) if self.num_classes else ()
    self.loss_kind = config.method.get("loss", "non_saturating")
    if self.loss_kind not in ("non_saturating", "hinge"):
      raise ArtjaxError(f"unknown method.loss {self.loss_kind!r}; known: non_saturating, hinge")
    self.tx = {G: make_optimizer(config.optimizer, config.total_steps),
               D: make_optimizer(config.get("optimizer_d", config.optimizer), config.total_steps)}

  def cond(self, label):
    """Keyword arguments that condition the networks on `label` (none when unconditional)."""
    return {"label": label} if self.num_classes else {}

  def init(self, rng, batch):
    rg, rd = jax.random.split(rng)
    n = batch["image"].shape[0]
    z = jnp.zeros((n, self.latent_dim))
    y = conditioning.init_labels(self.config, batch)
    pg, sg = split_variables(self.gen.init(rg, z, train=False, **self.cond(y)))
    pd, sd = split_variables(self.disc.init(rd, batch["image"], train=False, **self.cond(y)))
    return {G: pg, D: pd}, {G: sg, D: sd}

  def init_opt_state(self, params):
    return {k: self.tx[k].init(params[k]) for k in (G, D)}

  def update(self, params, model_state, opt_state, batch, rng):
    real = batch["image"]
    c = self.cond(conditioning.batch_labels(self.config, batch))
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
    c = self.cond(conditioning.sampling_labels(self.config, label, latents.shape[0]))
    out, _ = apply_module(self.gen, params[G], model_state[G], latents, train=False, **c)
    return out

  # --- BatchNorm statistics for sampling other weights than those trained (EMA) ---------------------

  def generator_batch_size(self) -> int:
    """The number of z per generator forward in training (WGAN-GP: one critic slice, m)."""
    return int(self.config.batch_size) // int(getattr(self, "n_critic", 1))

  def sampling_state(self, params, model_state, rng):
    """model_state with the generator's batch_stats re-estimated for params[G] (see the class docstring)."""
    num_batches = int(self.config.method.get("bn_recalibration_batches", BN_RECALIBRATION_BATCHES))
    g_state = model_state.get(G) or {}
    stats = g_state.get("batch_stats")
    if num_batches <= 0 or not jax.tree.leaves(stats):
      return model_state
    size = int(self.config.method.get("bn_recalibration_batch_size", 0) or self.generator_batch_size())
    if size < 2:
      raise ArtjaxError(f"method.bn_recalibration_batch_size must be >= 2 (a batch variance), got {size}")
    variables = {"params": params[G], **g_state}

    def batch_stats_of(key, index):
      z = self.prior(key, size)
      # Class-balanced over the K batches: batch i continues the label cycle where batch i-1 stopped.
      c = self.cond((jnp.arange(size) + index * size) % self.num_classes) if self.num_classes else {}
      with nn.intercept_methods(_sow_bn_input_stats):
        _, new = self.gen.apply(variables, z, train=True, mutable=[*g_state, _RECAL], **c)
      return new[_RECAL]

    keys = jax.random.split(rng, num_batches)
    per_batch = jax.lax.map(lambda a: batch_stats_of(*a), (keys, jnp.arange(num_batches)))

    def average(entries):  # sow keeps a tuple per name: one entry unless a layer runs twice per forward
      if len(entries) != 1:
        raise ArtjaxError("a generator BatchNorm layer is applied more than once per forward pass: its "
                          "statistics cannot be re-estimated for sampling (set method.bn_recalibration_batches=0)")
      return entries[0].mean(0)

    new_stats = jax.tree.map(average, per_batch, is_leaf=lambda x: isinstance(x, tuple))
    if jax.tree.structure(new_stats) != jax.tree.structure(stats):
      raise ArtjaxError("the generator's batch_stats are not all those of nn.BatchNorm layers run in train "
                        "mode (mean, var); cannot re-estimate them for sampling (set "
                        "method.bn_recalibration_batches=0)")
    new_stats = jax.tree.map(lambda new, old: new.astype(old.dtype).reshape(old.shape), new_stats, stats)
    return {**model_state, G: {**g_state, "batch_stats": new_stats}}


def _sow_bn_input_stats(next_fun, args, kwargs, context):
  """Interceptor: every nn.BatchNorm call in train mode sows its input's batch mean and variance.

  They are computed here from the input itself, over the axes the layer reduces (all but its feature
  axes), in float32 with the two-pass variance E[(x - E[x])^2] (biased, as BatchNorm normalizes with).
  This is exact and independent of the layer's momentum: extracting the batch statistics from the
  updated running averages instead would mean inverting momentum * old + (1 - momentum) * batch.
  """
  module = context.module
  if isinstance(module, nn.BatchNorm) and context.method_name == "__call__" and not nn.merge_param(
      "use_running_average", module.use_running_average,
      args[1] if len(args) > 1 else kwargs.get("use_running_average")):
    x = args[0] if args else kwargs["x"]
    if kwargs.get("mask") is not None:
      raise ArtjaxError("BatchNorm re-estimation for sampling does not support masked BatchNorm calls")
    x = jnp.asarray(x, jnp.promote_types(jnp.result_type(x), jnp.float32))
    axes = module.axis if isinstance(module.axis, (tuple, list)) else (module.axis,)
    feature_axes = {a % x.ndim for a in axes}
    reduce = tuple(a for a in range(x.ndim) if a not in feature_axes)
    mean = x.mean(reduce)
    module.sow(_RECAL, "mean", mean)
    module.sow(_RECAL, "var", jnp.square(x - jnp.expand_dims(mean, reduce)).mean(reduce))
  return next_fun(*args, **kwargs)
