"""The DDPM UNet (Ho et al. 2020, as in score_sde/improved-diffusion), small enough to read in one sitting.

x_t (B, H, W, C), t (B,) -> a tensor shaped like x_t (epsilon or v). Resolution levels follow
`channel_mult`; each level has `num_res_blocks` residual blocks (time embedding added in each), with
self-attention at the resolutions listed in `attention_resolutions`. Optional class conditioning: a
label embedding is added to the time embedding; label `num_classes` is the "null" label that
classifier-free guidance trains with (Ho & Salimans 2022).
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.models import MODELS
from artjax.models.layers import (AttentionBlock, ResBlock, group_norm, label_embedding, timestep_embedding,
                                  upsample_nearest)


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
    if self.num_classes:  # one more row: label num_classes is the null label
      emb = emb + label_embedding(labels, self.num_classes + 1, 4 * ch, x.shape[0])

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
