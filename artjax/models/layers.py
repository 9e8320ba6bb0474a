"""Flax layers and helpers that several model families share (DCGAN, VAE, UNet; new families reuse them).

Registers no model. Flax names a submodule after its class and a per-scope counter (`Upsample_0`,
`ResBlock_1`, `Embed_0`), not after the file defining it, so models built from these layers keep the
parameter trees their checkpoints were saved with. `label_embedding` is a function, not a module, for
the same reason: its `nn.Embed` is created in the calling module's scope, as an inline one would be.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def num_doublings(image_size: int) -> tuple[int, int]:
  """(n, base_res): image_size = base_res * 2**n with 4 <= base_res, e.g. 28 -> (2, 7), 32 -> (3, 4)."""
  n, res = 0, image_size
  while res % 2 == 0 and res // 2 >= 4:
    res //= 2
    n += 1
  if n == 0:
    raise ValueError(f"image_size {image_size} cannot be built by doubling from >= 4 px")
  return n, res


def upsample_nearest(x):
  """(B, H, W, C) -> (B, 2H, 2W, C), same dtype: nearest-neighbour upsampling.

  Written as a broadcast so that its gradient is a sum, not a scatter (slow on XLA:CPU).
  """
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


class Upsample(nn.Module):
  """(B, H, W, C) -> (B, 2H, 2W, features): 'resize' (nearest + 3x3 conv) or 'transpose' (4x4 stride-2
  transposed conv, the DCGAN paper's layer)."""
  features: int
  mode: str = "resize"
  use_bias: bool = False

  @nn.compact
  def __call__(self, x):
    if self.mode == "transpose":
      return nn.ConvTranspose(self.features, (4, 4), (2, 2), padding="SAME", use_bias=self.use_bias)(x)
    if self.mode == "resize":
      return nn.Conv(self.features, (3, 3), padding="SAME", use_bias=self.use_bias)(upsample_nearest(x))
    raise ValueError(f"unknown upsample mode {self.mode!r}: use 'resize' or 'transpose'")


def timestep_embedding(t, dim: int, max_period: float = 10000.0):
  """t (B,) int or float (fractional timesteps allowed) -> (B, 2 * (dim // 2)) float32: the sinusoidal
  embedding of the Transformer / DDPM, cosines then sines."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def label_embedding(label, num_classes: int, features: int, batch: int, **embed_kwargs):
  """A learned class embedding (batch, features) float32 of `label` for a class-conditional model.

  label: int (B,) or broadcastable to (batch,) (one class for all); None raises ValueError, so a
  conditional model called without labels fails at the call, not in a lookup.
  num_classes: rows of the table (a model with a "null" label, e.g. for classifier-free guidance,
  passes its classes + 1). embed_kwargs go to nn.Embed (e.g. embedding_init).
  Call it from a compact method: the table is that module's next `Embed_<i>`.
  """
  if label is None:
    raise ValueError("a class-conditional model (num_classes > 0) needs labels")
  return nn.Embed(num_classes, features, **embed_kwargs)(jnp.broadcast_to(label, (batch,)))


def group_norm(channels: int, groups: int):
  # gcd keeps tiny test models valid (e.g. 8 channels) while real ones get the usual 32 groups.
  return nn.GroupNorm(num_groups=math.gcd(groups, channels))


class ResBlock(nn.Module):
  """x (B, H, W, C), emb (B, E) -> (B, H, W, features): GroupNorm-swish-conv twice, emb projected and
  added in between (the DDPM residual block)."""
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
  """(B, H, W, C) -> (B, H, W, C): residual multi-head self-attention over the H*W positions."""
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
    # Zero-initialised output projection: the block starts as the identity, like ResBlock.
    h = nn.DenseGeneral(c, axis=(-2, -1), kernel_init=nn.initializers.zeros)(h)
    return x + h.reshape(b, hh, ww, c)
