"""Convolutional VAE (Kingma & Welling 2014), optionally class-conditional (CVAE, Sohn et al. 2015).

Encoder: stride-2 4x4 convs (28 -> 14 -> 7), flatten, [label embedding], Dense -> mean, log-variance.
Decoder: [z ++ label embedding] -> Dense to a base_res x base_res map -> nearest+conv upsampling
(`layers.Upsample`) to full size -> 3x3 conv to `channels * outputs_per_channel` likelihood parameters
(the method sets `outputs_per_channel` from its likelihood: 1 Bernoulli logit, or a logistic's location
and log-scale). No normalization layers: the model has no state besides params.

`dtype` is the compute dtype ('bfloat16' on GPUs/TPUs) of every layer, with float32 parameters and float32
outputs (mean, log-variance, likelihood parameters), so the ELBO is computed in float32. Weights carry
logical axis names (conv_in/conv_out channels; Dense kernels (conv_in, None) / (embed, conv_out)).
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import Upsample, conv, dense, label_embedding, num_doublings


class Encoder(nn.Module):
  """image (B, S, S, C) [, label (B,)] -> (mean, logvar), each (B, latent_dim)."""
  image_size: int = 28
  latent_dim: int = 32
  base_channels: int = 32
  num_classes: int = 0
  label_dim: int = 16
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, label=None):
    d = jnp.dtype(self.dtype)
    x = x.astype(d)
    n, _ = num_doublings(self.image_size)
    for i in range(n):  # e.g. 28x28 -> 14x14x32 -> 7x7x64
      x = nn.swish(conv(self.base_channels * 2 ** i, (4, 4), strides=(2, 2), padding="SAME", dtype=d)(x))
    h = x.reshape(x.shape[0], -1)
    if self.num_classes:
      y = label_embedding(label, self.num_classes, self.label_dim, h.shape[0], dtype=d)
      h = jnp.concatenate([h, y], axis=-1)
    stats = dense(2 * self.latent_dim, ("conv_in", None), dtype=d)(h).astype(jnp.float32)
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
  dtype: str = "float32"

  @nn.compact
  def __call__(self, z, label=None):
    d = jnp.dtype(self.dtype)
    z = z.astype(d)
    n, res = num_doublings(self.image_size)
    if self.num_classes:
      z = jnp.concatenate([z, label_embedding(label, self.num_classes, self.label_dim, z.shape[0], dtype=d)], axis=-1)
    # Mirrors the encoder, channels halving per doubling: 7x7x64 -> 14x14x32 -> 28x28x16. The
    # full-resolution conv dominates the cost, hence base_channels // 2 there rather than base_channels.
    ch = self.base_channels * 2 ** (n - 1)
    x = nn.swish(dense(res * res * ch, ("embed", "conv_out"), dtype=d)(z)).reshape(z.shape[0], res, res, ch)
    for _ in range(n):
      ch = max(ch // 2, 1)
      x = nn.swish(Upsample(ch, "resize", use_bias=True, dtype=d)(x))
    out = conv(self.channels * self.outputs_per_channel, (3, 3), padding="SAME", dtype=d)(x)
    return out.astype(jnp.float32)


class VAE(nn.Module):
  """Encoder + decoder; `apply(..., method="encode" | "decode")` runs one half, `__call__` is for init."""
  image_size: int = 28
  channels: int = 1
  latent_dim: int = 32
  base_channels: int = 32
  num_classes: int = 0
  label_dim: int = 16
  outputs_per_channel: int = 1
  dtype: str = "float32"  # compute dtype; parameters and outputs stay float32

  def setup(self):
    self.encoder = Encoder(self.image_size, self.latent_dim, self.base_channels, self.num_classes, self.label_dim,
                           self.dtype)
    self.decoder = Decoder(self.image_size, self.channels, self.base_channels, self.num_classes, self.label_dim,
                           self.outputs_per_channel, self.dtype)

  def encode(self, x, label=None):
    return self.encoder(x, label)

  def decode(self, z, label=None):
    return self.decoder(z, label)

  def __call__(self, x, label=None):
    mean, _ = self.encode(x, label)
    return self.decode(mean, label)


@MODELS.register("vae")
def vae(image_size=28, channels=1, latent_dim=32, base_channels=32, num_classes=0, label_dim=16, dtype="float32"):
  """The VAE module; num_classes > 0 makes it a class-conditional VAE (labels fed to both halves)."""
  return VAE(image_size, channels, latent_dim, base_channels, num_classes, label_dim, dtype=dtype)
