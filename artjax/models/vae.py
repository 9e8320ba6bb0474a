"""Convolutional VAE (Kingma & Welling 2014), optionally class-conditional (CVAE, Sohn et al. 2015).

Encoder: stride-2 4x4 convs (28 -> 14 -> 7), flatten, [label embedding], Dense -> mean, log-variance.
Decoder: [z ++ label embedding] -> Dense to a base_res x base_res map -> nearest+conv upsampling
(`layers.Upsample`) to full size -> 3x3 conv to `channels * outputs_per_channel` likelihood parameters
(the method sets `outputs_per_channel` from its likelihood: 1 Bernoulli logit, or a logistic's location
and log-scale). No normalization layers: the model has no state besides params.
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import Upsample, label_embedding, num_doublings


class Encoder(nn.Module):
  """image (B, S, S, C) [, label (B,)] -> (mean, logvar), each (B, latent_dim)."""
  image_size: int = 28
  latent_dim: int = 32
  base_channels: int = 32
  num_classes: int = 0
  label_dim: int = 16

  @nn.compact
  def __call__(self, x, label=None):
    n, _ = num_doublings(self.image_size)
    for i in range(n):  # e.g. 28x28 -> 14x14x32 -> 7x7x64
      x = nn.swish(nn.Conv(self.base_channels * 2 ** i, (4, 4), (2, 2), padding="SAME")(x))
    h = x.reshape(x.shape[0], -1)
    if self.num_classes:
      h = jnp.concatenate([h, label_embedding(label, self.num_classes, self.label_dim, h.shape[0])], axis=-1)
    stats = nn.Dense(2 * self.latent_dim)(h)
    mean, logvar = jnp.split(stats, 2, axis=-1)
    return mean, logvar


class Decoder(nn.Module):
  """z (B, latent_dim) [, label (B,)] -> likelihood parameters (B, S, S, channels * outputs_per_channel)."""
  image_size: int = 28
  channels: int = 1
  base_channels: int = 32
  num_classes: int = 0
  label_dim: int = 16
  outputs_per_channel: int = 1

  @nn.compact
  def __call__(self, z, label=None):
    n, res = num_doublings(self.image_size)
    if self.num_classes:
      z = jnp.concatenate([z, label_embedding(label, self.num_classes, self.label_dim, z.shape[0])], axis=-1)
    # Mirrors the encoder, channels halving per doubling: 7x7x64 -> 14x14x32 -> 28x28x16. The
    # full-resolution conv dominates the cost, hence base_channels // 2 there rather than base_channels.
    ch = self.base_channels * 2 ** (n - 1)
    x = nn.swish(nn.Dense(res * res * ch)(z)).reshape(z.shape[0], res, res, ch)
    for _ in range(n):
      ch = max(ch // 2, 1)
      x = nn.swish(Upsample(ch, "resize", use_bias=True)(x))
    return nn.Conv(self.channels * self.outputs_per_channel, (3, 3), padding="SAME")(x)


class VAE(nn.Module):
  """Encoder + decoder; `apply(..., method="encode" | "decode")` runs one half, `__call__` is for init."""
  image_size: int = 28
  channels: int = 1
  latent_dim: int = 32
  base_channels: int = 32
  num_classes: int = 0
  label_dim: int = 16
  outputs_per_channel: int = 1

  def setup(self):
    self.encoder = Encoder(self.image_size, self.latent_dim, self.base_channels, self.num_classes, self.label_dim)
    self.decoder = Decoder(self.image_size, self.channels, self.base_channels, self.num_classes, self.label_dim,
                           self.outputs_per_channel)

  def encode(self, x, label=None):
    return self.encoder(x, label)

  def decode(self, z, label=None):
    return self.decoder(z, label)

  def __call__(self, x, label=None):
    mean, _ = self.encode(x, label)
    return self.decode(mean, label)


@MODELS.register("vae")
def vae(image_size=28, channels=1, latent_dim=32, base_channels=32, num_classes=0, label_dim=16):
  """The VAE module; num_classes > 0 makes it a class-conditional VAE (labels fed to both halves)."""
  return VAE(image_size, channels, latent_dim, base_channels, num_classes, label_dim)
