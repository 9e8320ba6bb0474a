"""DCGAN (Radford et al. 2016) generator and discriminator, adapted to 16-64 px images.

Deviations from the paper, on purpose:
- the generator upsamples by nearest-neighbour resize + 3x3 conv ('resize', default) instead of
  stride-2 transposed convs: no checkerboard artifacts (Odena et al. 2016), and on CPU XLA computes
  transposed-conv weight gradients slowly (figures in experiments/README.md). `upsample='transpose'`
  gives the paper's layer;
- the generator ends with a full-resolution 3x3 conv from features to pixels, instead of making the
  last upsampling layer emit the image.

Class-conditional (`num_classes` > 0): the generator concatenates a learned label embedding (of z's
size) to z; the discriminator is a projection discriminator (Miyato & Koyama 2018): the logit gains
<embed(y), h>, h being the flattened final features its last linear layer reads. With num_classes=0
neither embedding exists, so the parameter tree is the unconditional one.

`dtype` is the compute dtype ('bfloat16' on GPUs/TPUs): every layer computes in it, with float32
parameters, float32 normalisation statistics (BatchNorm's running averages included) and a float32
output (image, logit). Weights carry logical axis names (conv_in/conv_out channels; z -> features
Dense (embed, conv_out); features -> logit Dense (conv_in, None)) for tensor-parallel sharding.
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import Upsample, conv, dense, label_embedding, num_doublings


def _norm(kind: str, train: bool, dtype=jnp.float32):
  # Flax reduces in float32 whatever `dtype` is, and keeps BatchNorm's running statistics float32.
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=dtype)
  if kind == "layer":
    return nn.LayerNorm(dtype=dtype)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"unknown norm {kind!r}: use 'batch', 'layer' or 'none'")


class Generator(nn.Module):
  """z (B, latent_dim) -> image (B, S, S, C) in [-1, 1]."""
  image_size: int = 32
  channels: int = 1
  base_channels: int = 64
  upsample: str = "resize"
  norm: str = "batch"
  num_classes: int = 0
  dtype: str = "float32"  # compute dtype; parameters and the image stay float32

  @nn.compact
  def __call__(self, z, train: bool = True, label=None):
    d = jnp.dtype(self.dtype)
    z = z.astype(d)
    if self.num_classes:
      y = label_embedding(label, self.num_classes, z.shape[-1], z.shape[0], dtype=d)
      z = jnp.concatenate([z, y], axis=-1)
    n, res = num_doublings(self.image_size)
    ch = self.base_channels * 2 ** n  # e.g. 28x28, base 32: 7x7x128 -> 14x14x64 -> 28x28x32 -> 28x28xC
    x = dense(res * res * ch, ("embed", "conv_out"), dtype=d, use_bias=self.norm == "none")(z)
    x = nn.relu(_norm(self.norm, train, d)(x.reshape(z.shape[0], res, res, ch)))
    for _ in range(n):
      ch //= 2
      x = Upsample(ch, self.upsample, use_bias=self.norm == "none", dtype=d)(x)
      x = nn.relu(_norm(self.norm, train, d)(x))
    # A full-resolution 3x3 conv maps features to pixels: after nearest upsampling, a single conv
    # straight to C channels gave visibly blurrier digits (experiments/README.md).
    return jnp.tanh(conv(self.channels, (3, 3), padding="SAME", dtype=d)(x).astype(jnp.float32))


class Discriminator(nn.Module):
  """image (B, S, S, C) -> logit (B,): strided 4x4 convs with LeakyReLU(0.2), no norm on the first."""
  image_size: int = 32
  base_channels: int = 64
  norm: str = "batch"
  num_classes: int = 0
  dtype: str = "float32"  # compute dtype; parameters and the logit stay float32

  @nn.compact
  def __call__(self, x, train: bool = True, label=None):
    d = jnp.dtype(self.dtype)
    x = x.astype(d)
    n, _ = num_doublings(self.image_size)
    ch = self.base_channels
    for i in range(n):
      x = conv(ch, (4, 4), strides=(2, 2), padding="SAME", use_bias=i == 0 or self.norm == "none", dtype=d)(x)
      if i > 0:
        x = _norm(self.norm, train, d)(x)
      x = nn.leaky_relu(x, 0.2)
      ch *= 2
    h = x.reshape(x.shape[0], -1)
    logit = dense(1, ("conv_in", None), dtype=d)(h)[:, 0].astype(jnp.float32)
    if self.num_classes:
      # Scaled like the Dense's lecun init, so the projection does not dominate the logit at init.
      y = label_embedding(label, self.num_classes, h.shape[-1], h.shape[0], dtype=d,
                          embedding_init=nn.initializers.normal(h.shape[-1] ** -0.5))
      # <embed(y), h> summed in float32: a (B, features) product, cheap, and the logit's other half.
      logit = logit + jnp.sum(y.astype(jnp.float32) * h.astype(jnp.float32), axis=-1)
    return logit


@MODELS.register("dcgan")
def dcgan(image_size=32, channels=1, base_channels=64, disc_base_channels=None, upsample="resize",
          gen_norm="batch", disc_norm="batch", num_classes=0, dtype="float32"):
  """The generator/discriminator pair a GAN method trains; num_classes > 0 makes both class-conditional;
  dtype is both networks' compute dtype."""
  return {
      "generator": Generator(image_size, channels, base_channels, upsample, gen_norm, num_classes, dtype),
      "discriminator": Discriminator(image_size, disc_base_channels or base_channels, disc_norm, num_classes, dtype),
  }
