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

# Logical axis names of weights (artjax.train.sharding maps them onto mesh axes with the config's rules):
# embed (model width), mlp (hidden units), heads, kv (per-head size), vocab, conv_in / conv_out (channels).


def named(init, *names):
  """`init` whose parameter carries logical axis names (Flax logical partitioning), one per dimension."""
  return nn.with_logical_partitioning(init, names)


def conv(features, kernel_size, *, dtype=jnp.float32, kernel_init=nn.initializers.lecun_normal(),
         transpose=False, **kwargs):
  """nn.Conv (or nn.ConvTranspose) with kernel (kh, kw, conv_in, conv_out) and bias (conv_out) named."""
  cls = nn.ConvTranspose if transpose else nn.Conv
  return cls(features, kernel_size, dtype=dtype,
             kernel_init=named(kernel_init, *(None,) * len(kernel_size), "conv_in", "conv_out"),
             bias_init=named(nn.initializers.zeros_init(), "conv_out"), **kwargs)


def dense(features, names=("embed", "mlp"), *, dtype=jnp.float32, kernel_init=nn.initializers.lecun_normal(),
          **kwargs):
  """nn.Dense with kernel (in, out) named `names` and bias named `names[1]`."""
  return nn.Dense(features, dtype=dtype, kernel_init=named(kernel_init, *names),
                  bias_init=named(nn.initializers.zeros_init(), names[1]), **kwargs)


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
  dtype: jnp.dtype = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, x):
    if self.mode == "transpose":
      return conv(self.features, (4, 4), strides=(2, 2), padding="SAME", use_bias=self.use_bias, dtype=self.dtype,
                  transpose=True)(x)
    if self.mode == "resize":
      return conv(self.features, (3, 3), padding="SAME", use_bias=self.use_bias, dtype=self.dtype)(upsample_nearest(x))
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


def group_norm(channels: int, groups: int, dtype=jnp.float32):
  # gcd keeps tiny test models valid (e.g. 8 channels) while real ones get the usual 32 groups.
  # Flax computes the statistics in float32 whatever `dtype` is.
  return nn.GroupNorm(num_groups=math.gcd(groups, channels), dtype=dtype)


class ResBlock(nn.Module):
  """x (B, H, W, C), emb (B, E) -> (B, H, W, features): GroupNorm-swish-conv twice, emb projected and
  added in between (the DDPM residual block)."""
  features: int
  groups: int = 32
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, emb, train: bool):
    d = self.dtype
    h = conv(self.features, (3, 3), dtype=d)(nn.swish(group_norm(x.shape[-1], self.groups, d)(x)))
    h = h + dense(self.features, ("embed", "conv_out"), dtype=d)(nn.swish(emb))[:, None, None, :]
    h = nn.swish(group_norm(self.features, self.groups, d)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    # Zero-initialised last conv: every block starts as the identity, which stabilises early training.
    h = conv(self.features, (3, 3), dtype=d, kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.features:
      x = conv(self.features, (1, 1), dtype=d)(x)
    return x + h


class AttentionBlock(nn.Module):
  """(B, H, W, C) -> (B, H, W, C): residual multi-head self-attention over the H*W positions."""
  num_heads: int = 1
  groups: int = 32
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, hh, ww, c = x.shape
    if c % self.num_heads:
      raise ValueError(f"{c} channels cannot be split into {self.num_heads} attention heads")
    zeros = nn.initializers.zeros_init()
    h = group_norm(c, self.groups, self.dtype)(x).reshape(b, hh * ww, c)
    heads, d = self.num_heads, c // self.num_heads
    # Einsum rather than DenseGeneral (same parameters), whose flattened kernel initialisation does not fit
    # logical names; fan-in over axis 0 only, as DenseGeneral's flattened (c, 3*heads*d) kernel had.
    qkv = nn.Einsum((c, 3, heads, d), "blc,cshd->blshd", dtype=self.dtype, name="DenseGeneral_0",
                    kernel_init=named(nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3)),
                                     "conv_in", None, "heads", "kv"),
                    bias_init=named(zeros, None, "heads", "kv"))(h)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    h = jax.nn.dot_product_attention(q, k, v)  # (B, L, heads, head_dim); fused kernels on GPU.
    # Zero-initialised output projection: the block starts as the identity, like ResBlock.
    h = nn.Einsum((heads, d, c), "blhd,hdc->blc", dtype=self.dtype, name="DenseGeneral_1",
                  kernel_init=named(zeros, "heads", "kv", "conv_out"), bias_init=named(zeros, "conv_out"))(h)
    return x + h.reshape(b, hh, ww, c)
