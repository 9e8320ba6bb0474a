"""Temporal convolutional network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of Generic
Convolutional and Recurrent Networks for Sequence Modeling", section 3 and figure 1).

  __call__(x, train) -> logits (B, T, vocab_size)   x: (B, T, input_size) frames, or (B, T) token ids

`num_levels` residual blocks; block i holds two causal convolutions (kernel `kernel_size`, dilation 2^i,
left padding (k-1)·2^i so output t sees inputs <= t only), each with weight normalisation, ReLU and
dropout, plus a 1x1 convolution on the skip path where the width changes. The receptive field is
1 + 2·(k-1)·(2^L - 1) steps (kernel 3, 2 levels: 13). Weights are drawn from N(0, 0.01) as in the
paper's code (locuslab/TCN). There is no cache: a sampler re-runs the network over its window.

`dtype` is the compute dtype ('bfloat16' on GPUs/TPUs) of the embedding, convolutions and head, with
float32 parameters (weight normalisation's norm computed on them in float32) and float32 logits.
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import conv as conv_layer, dense, named


class TemporalBlock(nn.Module):
  features: int
  kernel_size: int
  dilation: int
  dropout: float
  weight_norm: bool
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = x
    # nn.WeightNorm names its scale after the kernel's path, which a logical-axis box would lengthen
    # (`conv0/kernel/value/scale`) and so break checkpoints: weight-normalised convs stay unnamed.
    make = nn.Conv if self.weight_norm else conv_layer
    for i in range(2):
      conv = make(self.features, (self.kernel_size,), kernel_dilation=(self.dilation,),
                  padding=(((self.kernel_size - 1) * self.dilation, 0),), dtype=self.dtype,
                  kernel_init=nn.initializers.normal(0.01), name=f"conv{i}")
      y = nn.WeightNorm(conv, name=f"wn{i}")(y) if self.weight_norm else conv(y)
      y = nn.Dropout(self.dropout)(nn.relu(y), deterministic=not train)
    if x.shape[-1] != self.features:
      x = conv_layer(self.features, (1,), dtype=self.dtype, kernel_init=nn.initializers.normal(0.01), name="skip")(x)
    return nn.relu(x + y)


class TCN(nn.Module):
  vocab_size: int  # outputs per step (88 Bernoulli logits for piano-roll frames)
  input_size: int = 0  # 0: token ids (embedded to `channels`); > 0: vectors of this size
  channels: int = 150
  num_levels: int = 2
  kernel_size: int = 3
  dropout: float = 0.5
  weight_norm: bool = True
  max_len: int = 256  # sampling window (the network itself has no length limit)
  dtype: str = "float32"  # compute dtype; parameters and logits stay float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    d = jnp.dtype(self.dtype)
    if self.input_size:
      x = x.astype(d)
    else:
      x = nn.Embed(self.vocab_size, self.channels, dtype=d, name="embed",
                   embedding_init=named(nn.linear.default_embed_init, "vocab", "conv_in"))(x)
    for i in range(self.num_levels):
      x = TemporalBlock(self.channels, self.kernel_size, 2 ** i, self.dropout, self.weight_norm, d,
                        name=f"block{i}")(x, train)
    head = dense(self.vocab_size, ("conv_in", "vocab"), dtype=d, kernel_init=nn.initializers.normal(0.01), name="head")
    return head(x).astype(jnp.float32)


MODELS.register("tcn")(TCN)
