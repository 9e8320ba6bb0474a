"""VAEs: maximize the ELBO with the reparameterization trick; importance-weighted log-likelihood (IWAE bound).

config.method:
  likelihood  'bernoulli': data in [0, 1], one logit per sub-pixel; with binarize=True each step models a
              fresh Bernoulli draw of the grey image (dynamic binarization, the MNIST NLL standard).
              'logistic': 8-bit data in [-1, 1], a discretized logistic per sub-pixel (Kingma et al. 2016;
              PixelCNN++ with one component) whose location and log-scale the decoder emits per sub-pixel.
  beta        KL weight (default 1: the ELBO; the logged `elbo` is always the true, beta = 1, bound).
  nll_chunk   images per decoder call in `log_likelihood` (default 4096): bounds its memory.
The architecture (latent_dim, num_classes) is config.model's. Log-likelihoods are in nats per example;
bits/dim divide by H*W*C*log(2) (for binarized data: bits per binary pixel).
"""

import math

import jax
import jax.numpy as jnp

from artjax import options as opts
from artjax.errors import ArtjaxError
from artjax.methods import METHODS, conditioning
from artjax.methods.base import SingleLossMethod, apply_module, split_variables

# likelihood -> (decoder outputs per channel, the data value_range it models)
LIKELIHOODS = {"bernoulli": (1, (0.0, 1.0)), "logistic": (2, (-1.0, 1.0))}
HALF_BIN = 1.0 / 255.0  # 8-bit data in [-1, 1]: bin centres 2/255 apart
MIN_LOG_SCALE = -7.0    # as PixelCNN++: keeps 1/scale finite when the decoder is very sure


def bernoulli_log_prob(logits, x):
  """Sum over pixels of log Bernoulli(x | sigmoid(logits)), x in [0, 1] (binary, or grey as a soft target)."""
  lp = x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits)
  return lp.reshape(lp.shape[0], -1).sum(-1)


def discretized_logistic_log_prob(loc, log_scale, x):
  """Per-sub-pixel log P(x) for 8-bit x in [-1, 1] under a logistic discretized to 256 bins (elementwise).

  The end bins take the tails (-inf, -1 + 1/255] and [1 - 1/255, inf), so the 256 masses sum to 1.
  log(sigmoid(a) - sigmoid(b)) is computed as log_sigmoid(a) + log_sigmoid(-b) + log(1 - exp(b - a)):
  exact and finite even when both sigmoids saturate, so no PixelCNN++-style pdf fallback is needed.
  """
  inv_s = jnp.exp(-log_scale)
  upper = inv_s * (x - loc + HALF_BIN)
  lower = inv_s * (x - loc - HALF_BIN)
  bin_mass = jax.nn.log_sigmoid(upper) + jax.nn.log_sigmoid(-lower) + jnp.log(-jnp.expm1(lower - upper))
  return jnp.where(x < -1.0 + HALF_BIN, jax.nn.log_sigmoid(upper),        # bin 0: P(X <= -1 + 1/255)
                   jnp.where(x > 1.0 - HALF_BIN, jax.nn.log_sigmoid(-lower),  # bin 255: P(X > 1 - 1/255)
                             bin_mass))


def gaussian_kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) per row, in nats."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + mean ** 2 - 1.0 - logvar, axis=-1)


@METHODS.register("vae")
class VAE(SingleLossMethod):
  """See the module docstring."""

  OPTIONS = (opts.LABEL,)

  def __init__(self, config):
    super().__init__(config)
    m = config.method
    self.likelihood = m.get("likelihood", "bernoulli")
    if self.likelihood not in LIKELIHOODS:
      raise ArtjaxError(f"unknown method.likelihood {self.likelihood!r}; known: {', '.join(LIKELIHOODS)}")
    outputs_per_channel, value_range = LIKELIHOODS[self.likelihood]
    data_range = tuple(float(v) for v in config.data.get("value_range", (-1.0, 1.0)))
    if data_range != value_range:
      raise ArtjaxError(f"the {self.likelihood} likelihood models data in {value_range}, but "
                        f"config.data.value_range is {data_range}")
    self.binarize = bool(m.get("binarize", False))
    if self.binarize and self.likelihood != "bernoulli":
      raise ArtjaxError("method.binarize only applies to the bernoulli likelihood")
    self.beta = float(m.get("beta", 1.0))
    self.nll_chunk = int(m.get("nll_chunk", 4096))
    # The likelihood decides how many parameters the decoder emits per sub-pixel.
    self.model = self.model.clone(outputs_per_channel=outputs_per_channel)
    self.latent_dim = self.model.latent_dim
    self.num_classes = conditioning.num_classes(config)
    self.sample_options = ("label",) if self.num_classes else ()

  # -- pieces -----------------------------------------------------------------------------------------

  def _encode(self, params, x, label):
    (mean, logvar), _ = apply_module(self.model, params, {}, x, label, method="encode")
    return mean, logvar

  def _decode_params(self, params, z, label):
    out, _ = apply_module(self.model, params, {}, z, label, method="decode")
    return out

  def _log_px(self, out, x):
    """log p(x | z) per example (nats) from the decoder's output."""
    if self.likelihood == "bernoulli":
      return bernoulli_log_prob(out, x)
    loc, log_scale = jnp.split(out, 2, axis=-1)
    lp = discretized_logistic_log_prob(loc, jnp.maximum(log_scale, MIN_LOG_SCALE), x)
    return lp.reshape(lp.shape[0], -1).sum(-1)

  def _mean(self, out):
    """The decoder's mean image in the data range."""
    if self.likelihood == "bernoulli":
      return jax.nn.sigmoid(out)
    loc, _ = jnp.split(out, 2, axis=-1)
    return jnp.clip(loc, -1.0, 1.0)

  def _targets(self, images, rng):
    """The data point being modelled: a fresh binarization of the grey image (dynamic binarization) or itself."""
    if self.binarize:
      return jax.random.bernoulli(rng, images).astype(images.dtype)
    return images

  def elbo_terms(self, params, x, label, eps):
    """(elbo, recon, kl), each (B,) in nats: one reparameterized sample z = mean + sigma * eps, analytic KL."""
    mean, logvar = self._encode(params, x, label)
    z = mean + jnp.exp(0.5 * logvar) * eps
    log_px = self._log_px(self._decode_params(params, z, label), x)
    kl = gaussian_kl(mean, logvar)
    return log_px - kl, -log_px, kl

  def bits_per_dim(self, nats, image_shape):
    return nats / (math.prod(image_shape[1:]) * math.log(2.0))

  # -- the Method contract ----------------------------------------------------------------------------

  def init(self, rng, batch):
    x = batch["image"]
    return split_variables(self.model.init(rng, x, conditioning.init_labels(self.config, batch)))

  def loss(self, params, model_state, batch, rng):
    x_rng, z_rng = jax.random.split(rng)
    x = self._targets(batch["image"], x_rng)
    eps = jax.random.normal(z_rng, (x.shape[0], self.latent_dim))
    elbo, recon, kl = self.elbo_terms(params, x, conditioning.batch_labels(self.config, batch), eps)
    loss = jnp.mean(recon + self.beta * kl)
    metrics = {"elbo": elbo.mean(), "recon": recon.mean(), "kl": kl.mean(),
               "bits_per_dim": self.bits_per_dim(-elbo.mean(), x.shape)}
    return loss, (model_state, metrics)

  def prior(self, rng, num):
    return jax.random.normal(rng, (num, self.latent_dim))

  def decode(self, params, model_state, latents, rng, label=None):
    """The decoder's mean (Bernoulli probabilities, or the logistic location clipped to [-1, 1]); `rng` unused."""
    labels = conditioning.sampling_labels(self.config, label, latents.shape[0])
    return self._mean(self._decode_params(params, latents, labels))

  def reconstruct(self, params, model_state, images, rng, label=None):
    """Encoder mean -> decoder mean. `label`: the images' classes (an int or (B,) array) when conditional."""
    if self.num_classes and label is None:
      raise ArtjaxError("reconstructing with a class-conditional VAE needs the images' labels")
    if label is None or isinstance(label, int) or not self.num_classes:
      # Range-checked; an unconditional VAE rejects any label.
      labels = conditioning.sampling_labels(self.config, label, images.shape[0])
    else:  # the images' own classes, (B,) or one for all
      labels = jnp.broadcast_to(jnp.asarray(label, jnp.int32), images.shape[:1])
    mean, _ = self._encode(params, images, labels)
    return self._mean(self._decode_params(params, mean, labels))

  def log_likelihood(self, params, model_state, batch, rng, num_samples):
    """(B,) importance-weighted estimate of log p(x) in nats (Burda et al. 2016):

      log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z | x),

    a lower bound in expectation that tightens as K grows (K = 1: an unbiased single-sample ELBO).
    Randomness: `x_rng, z_rng = split(rng)`; with method.binarize the batch is first binarized with
    x_rng (so the estimate is of the binarized data point, as in the MNIST NLL literature), and
    eps = normal(z_rng, (K, B, latent_dim)). The decoder sees at most ~nll_chunk images per call
    (a lax.map over chunks of the K samples), so memory does not grow with K.
    """
    num_samples = int(num_samples)
    if num_samples < 1:
      raise ArtjaxError(f"log_likelihood needs num_samples >= 1, got {num_samples}")
    x_rng, z_rng = jax.random.split(rng)
    x = self._targets(batch["image"], x_rng)
    label = conditioning.batch_labels(self.config, batch)
    b = x.shape[0]
    mean, logvar = self._encode(params, x, label)
    std = jnp.exp(0.5 * logvar)
    eps = jax.random.normal(z_rng, (num_samples, b, self.latent_dim))
    num_chunks = -(-num_samples // max(1, self.nll_chunk // b))
    chunk = -(-num_samples // num_chunks)  # equal chunks, so at most num_chunks - 1 samples are padding
    pad = num_chunks * chunk - num_samples  # padded samples are computed and then dropped
    eps = jnp.concatenate([eps, jnp.zeros((pad, b, self.latent_dim), eps.dtype)])
    eps = eps.reshape(num_chunks, chunk, b, self.latent_dim)
    tiled_x = jnp.broadcast_to(x, (chunk,) + x.shape).reshape((chunk * b,) + x.shape[1:])
    tiled_label = None if label is None else jnp.tile(label, chunk)

    def log_weights(e):  # (chunk, B, L) -> (chunk, B)
      z = mean + std * e
      out = self._decode_params(params, z.reshape(chunk * b, -1), tiled_label)
      log_px = self._log_px(out, tiled_x).reshape(chunk, b)
      # log p(z) - log q(z|x); the log(2 pi) terms cancel.
      log_pz_minus_qz = -0.5 * jnp.sum(z ** 2 - e ** 2 - logvar, axis=-1)
      return log_px + log_pz_minus_qz

    lw = jax.lax.map(log_weights, eps).reshape(num_chunks * chunk, b)[:num_samples]
    return jax.nn.logsumexp(lw, axis=0) - math.log(num_samples)
