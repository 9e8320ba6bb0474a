"""Temporal convolutional network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of Generic
Convolutional and Recurrent Networks for Sequence Modeling", section 3 and figure 1).

  __call__(x, train) -> logits (B, T, vocab_size)   x: (B, T, input_size) frames, or (B, T) token ids

`num_levels` residual blocks; block i holds two causal convolutions (kernel `kernel_size`, dilation 2^i,
left padding (k-1)·2^i so output t sees inputs <= t only), each with weight normalisation, ReLU and
dropout, plus a 1x1 convolution on the skip path where the width changes. The receptive field is
1 + 2·(k-1)·(2^L - 1) steps (kernel 3, 2 levels: 13). Weights are drawn from N(0, 0.01) as in the
paper's code (locuslab/TCN). There is no cache: a sampler re-runs the network over its window.
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS


class TemporalBlock(nn.Module):
  features: int
  kernel_size: int
  dilation: int
  dropout: float
  weight_norm: bool

  @nn.compact
  def __call__(self, x, train: bool):
    y = x
    for i in range(2):
      conv = nn.Conv(self.features, (self.kernel_size,), kernel_dilation=(self.dilation,),
                     padding=(((self.kernel_size - 1) * self.dilation, 0),),
                     kernel_init=nn.initializers.normal(0.01), name=f"conv{i}")
      y = nn.WeightNorm(conv, name=f"wn{i}")(y) if self.weight_norm else conv(y)
      y = nn.Dropout(self.dropout)(nn.relu(y), deterministic=not train)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1,), kernel_init=nn.initializers.normal(0.01), name="skip")(x)
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

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.input_size:
      x = x.astype(jnp.float32)
    else:
      x = nn.Embed(self.vocab_size, self.channels, name="embed")(x)
    for i in range(self.num_levels):
      x = TemporalBlock(self.channels, self.kernel_size, 2 ** i, self.dropout, self.weight_norm,
                        name=f"block{i}")(x, train)
    return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(0.01), name="head")(x)


MODELS.register("tcn")(TCN)
