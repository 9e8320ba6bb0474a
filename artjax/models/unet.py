"""The DDPM UNet (Ho et al. 2020, as in score_sde/improved-diffusion), small enough to read in one sitting.

x_t (B, H, W, C), t (B,) -> a tensor shaped like x_t (epsilon or v). Resolution levels follow
`channel_mult`; each level has `num_res_blocks` residual blocks (time embedding added in each), with
self-attention at the resolutions listed in `attention_resolutions`. Optional class conditioning: a
label embedding is added to the time embedding; label `num_classes` is the "null" label that
classifier-free guidance trains with (Ho & Salimans 2022).

Weights carry logical axis names (conv_in/conv_out channels, heads) so a config can split channels over
a tensor-parallel mesh axis; `dtype` is the compute dtype ('bfloat16' on GPUs/TPUs), with float32
parameters, float32 normalisation statistics and a float32 output.
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import (AttentionBlock, ResBlock, conv, dense, group_norm, label_embedding,
                                  timestep_embedding, upsample_nearest)


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
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x, t, labels=None, train: bool = False):
    ch, g, d = self.base_channels, self.norm_groups, jnp.dtype(self.dtype)
    emb = timestep_embedding(t, ch)
    emb = dense(4 * ch, ("embed", "mlp"), dtype=d)(nn.swish(dense(4 * ch, ("embed", "mlp"), dtype=d)(emb)))
    if self.num_classes:  # one more row: label num_classes is the null label
      emb = emb + label_embedding(labels, self.num_classes + 1, 4 * ch, x.shape[0])

    def blocks_at(h, features):
      h = ResBlock(features, g, self.dropout, d)(h, emb, train)
      if h.shape[1] in self.attention_resolutions:
        h = AttentionBlock(self.num_heads, g, d)(h)
      return h

    h = conv(ch, (3, 3), dtype=d)(x.astype(d))
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = blocks_at(h, ch * mult)
        skips.append(h)
      if level != len(self.channel_mult) - 1:
        if h.shape[1] % 2:
          raise ValueError(f"resolution {h.shape[1]} is odd: use fewer levels in channel_mult")
        h = conv(h.shape[-1], (3, 3), strides=(2, 2), dtype=d)(h)
        skips.append(h)

    h = ResBlock(h.shape[-1], g, self.dropout, d)(h, emb, train)
    h = AttentionBlock(self.num_heads, g, d)(h)
    h = ResBlock(h.shape[-1], g, self.dropout, d)(h, emb, train)

    for level, mult in reversed(list(enumerate(self.channel_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = blocks_at(jnp.concatenate([h, skips.pop()], axis=-1), ch * mult)
      if level:
        h = conv(h.shape[-1], (3, 3), dtype=d)(upsample_nearest(h))

    h = nn.swish(group_norm(h.shape[-1], g, d)(h))
    return conv(self.channels, (3, 3), dtype=d, kernel_init=nn.initializers.zeros)(h).astype(jnp.float32)


@MODELS.register("unet")
def unet(channels=1, base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(7,),
         num_heads=1, dropout=0.0, num_classes=0, norm_groups=32, dtype="float32"):
  return UNet(channels, base_channels, tuple(channel_mult), num_res_blocks, tuple(attention_resolutions),
              num_heads, dropout, num_classes, norm_groups, dtype)
