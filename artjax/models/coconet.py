"""Coconet (Huang, Cooijmans, Roberts, Courville & Eck 2017, "Counterpoint by Convolution"): a
convolutional network over a grid of voices x time x pitch that fills in whatever part is masked.

  __call__(voices, mask, train) -> logits (B, T, P, V)
    voices: (B, T, V) int class per voice and step (pitch - low_pitch, or P - 1 for a rest);
    mask:   (B, T, V) bool, True where the note is hidden (to be predicted).
The input image is (T, P) with 2V channels: each voice's one-hot pitch roll, zeroed where hidden, and
each voice's mask (paper section 4). A 3x3 convolution, `num_layers - 2` more 3x3 convolutions with a
residual connection every two, and a 3x3 convolution to V output channels: a softmax over P per voice
and step. Normalisation is LayerNorm over channels (the paper uses batch normalisation; LayerNorm
keeps the model stateless, so a sampler's masks of any shape see the same network).

`dtype` is the compute dtype ('bfloat16' on GPUs/TPUs) of the convolutions and LayerNorms (statistics in
float32), with float32 parameters and float32 logits. Conv kernels carry logical axis names (conv_in/conv_out).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import conv as conv_layer


class Coconet(nn.Module):
  num_classes: int  # pitches of the grid plus one rest class
  num_voices: int = 4
  channels: int = 64
  num_layers: int = 16  # the paper: 64 layers of 128 channels
  kernel_size: int = 3
  dtype: str = "float32"

  @nn.compact
  def __call__(self, voices, mask, train: bool = False):
    del train
    dtype = jnp.dtype(self.dtype)
    hidden = mask.astype(dtype)[:, :, None, :]                          # (B, T, 1, V)
    roll = jax.nn.one_hot(voices, self.num_classes, axis=2, dtype=dtype)  # (B, T, P, V)
    x = jnp.concatenate([roll * (1.0 - hidden), jnp.broadcast_to(hidden, roll.shape)], axis=-1)
    conv = lambda n, name: conv_layer(n, (self.kernel_size,) * 2, padding="SAME", dtype=dtype, name=name)  # noqa: E731
    x = nn.relu(nn.LayerNorm(dtype=dtype, name="ln_in")(conv(self.channels, "conv_in")(x)))
    skip = x
    for i in range(self.num_layers - 2):
      x = nn.LayerNorm(dtype=dtype, name=f"ln{i}")(conv(self.channels, f"conv{i}")(x))
      if i % 2 == 1:  # a residual connection every two layers
        x, skip = x + skip, None
      x = nn.relu(x)
      skip = x if skip is None else skip
    return conv(self.num_voices, "conv_out")(x).astype(jnp.float32)


MODELS.register("coconet")(Coconet)
