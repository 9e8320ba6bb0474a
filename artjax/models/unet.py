"""The DDPM UNet (Ho et al. 2020, as in score_sde/improved-diffusion), small enough to read in one sitting.

x_t (B, H, W, C), t (B,) -> a tensor shaped like x_t (epsilon or v). Resolution levels follow
`channel_mult`; each level has `num_res_blocks` residual blocks (time embedding added in each), with
self-attention at the resolutions listed in `attention_resolutions`. Optional class conditioning: a
label embedding is added to the time embedding; label `num_classes` is the "null" label that
classifier-free guidance trains with (Ho & Salimans 2022).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.dcgan import upsample_nearest


def timestep_embedding(t, dim: int, max_period: float = 10000.0):
  """Sinusoidal embedding of (possibly fractional) timesteps, as in the Transformer / DDPM."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def group_norm(channels: int, groups: int):
  # gcd keeps tiny test models valid (e.g. 8 channels) while real ones get the usual 32 groups.
  return nn.GroupNorm(num_groups=math.gcd(groups, channels))


class ResBlock(nn.Module):
  features: int
  groups: int = 32
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, emb, train: bool):
    h = nn.Conv(self.features, (3, 3))(nn.swish(group_norm(x.shape[-1], self.groups)(x)))
    h = h + nn.Dense(self.features)(nn.swish(emb))[:, None, None, :]
    h = nn.swish(group_norm(self.features, self.groups)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    # Zero-initialised last conv: every block starts as the identity, which stabilises early training.
    h = nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1))(x)
    return x + h


class AttentionBlock(nn.Module):
  num_heads: int = 1
  groups: int = 32

  @nn.compact
  def __call__(self, x):
    b, hh, ww, c = x.shape
    if c % self.num_heads:
      raise ValueError(f"{c} channels cannot be split into {self.num_heads} attention heads")
    h = group_norm(c, self.groups)(x).reshape(b, hh * ww, c)
    qkv = nn.DenseGeneral((3, self.num_heads, c // self.num_heads))(h)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    h = jax.nn.dot_product_attention(q, k, v)  # (B, L, heads, head_dim); fused kernels on GPU.
    h = nn.DenseGeneral(c, axis=(-2, -1), kernel_init=nn.initializers.zeros)(h)
    return x + h.reshape(b, hh, ww, c)


class UNet(nn.Module):
  channels: int = 1                 # image channels (output has the same)
  base_channels: int = 64
  channel_mult: tuple = (1, 2, 2)
  num_res_blocks: int = 2
  attention_resolutions: tuple = (7,)
  num_heads: int = 1
  dropout: float = 0.0
  num_classes: int = 0              # 0: unconditional; else labels 0..num_classes (num_classes = null)
  norm_groups: int = 32

  @nn.compact
  def __call__(self, x, t, labels=None, train: bool = False):
    ch, g = self.base_channels, self.norm_groups
    emb = timestep_embedding(t, ch)
    emb = nn.Dense(4 * ch)(nn.swish(nn.Dense(4 * ch)(emb)))
    if self.num_classes:
      if labels is None:
        raise ValueError("this UNet is class-conditional: pass labels (num_classes means 'no label')")
      emb = emb + nn.Embed(self.num_classes + 1, 4 * ch)(labels)

    def blocks_at(h, features):
      h = ResBlock(features, g, self.dropout)(h, emb, train)
      if h.shape[1] in self.attention_resolutions:
        h = AttentionBlock(self.num_heads, g)(h)
      return h

    h = nn.Conv(ch, (3, 3))(x)
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = blocks_at(h, ch * mult)
        skips.append(h)
      if level != len(self.channel_mult) - 1:
        if h.shape[1] % 2:
          raise ValueError(f"resolution {h.shape[1]} is odd: use fewer levels in channel_mult")
        h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
        skips.append(h)

    h = ResBlock(h.shape[-1], g, self.dropout)(h, emb, train)
    h = AttentionBlock(self.num_heads, g)(h)
    h = ResBlock(h.shape[-1], g, self.dropout)(h, emb, train)

    for level, mult in reversed(list(enumerate(self.channel_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = blocks_at(jnp.concatenate([h, skips.pop()], axis=-1), ch * mult)
      if level:
        h = nn.Conv(h.shape[-1], (3, 3))(upsample_nearest(h))

    h = nn.swish(group_norm(h.shape[-1], g)(h))
    return nn.Conv(self.channels, (3, 3), kernel_init=nn.initializers.zeros)(h)


@MODELS.register("unet")
def unet(channels=1, base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(7,),
         num_heads=1, dropout=0.0, num_classes=0, norm_groups=32):
  return UNet(channels, base_channels, tuple(channel_mult), num_res_blocks, tuple(attention_resolutions),
              num_heads, dropout, num_classes, norm_groups)
