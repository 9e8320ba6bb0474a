r"""DDPM on emoji art: a folder of RGBA PNGs (e.g. the 3.7k Twemoji 72x72 set) composited on white, at 32x32.

  python -m artjax.train --config configs/diffusion/twemoji_ddpm.py --workdir runs/twemoji_ddpm \
      --config.data.dir=/path/to/twemoji/72x72
  python -m artjax.sample --workdir runs/twemoji_ddpm --num 64 --out emoji.png
  python -m artjax.sample --workdir runs/twemoji_ddpm --num 6 --interpolate 8 --out walk.png

Any folder of images works (PNG/JPEG/..., searched recursively; transparency is composited onto
`data.background`; non-square images are centre-cropped). The UNet is small enough for a CPU
(base 32, 1 res block per level); on a GPU try base_channels=128, num_res_blocks=2, image_size=64
with channel_mult=(1, 2, 2, 2). `:smoke` is a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 3000
  c.batch_size = 64
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="image_folder", dir="", split="train", image_size=32, channels=3,
                background=(255, 255, 255), value_range=(-1.0, 1.0), random_flip=False, shuffle=True,
                num_threads=2)
  c.model = dict(name="unet", dtype="float32", channels=3, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=1, dropout=0.0, num_classes=0, norm_groups=8)
  c.method = dict(name="diffusion", num_timesteps=1000, schedule="cosine", prediction="v",
                  cond_dropout=0.1, sampler="ddim", sample_steps=50, eta=0.0, guidance=None)
  c.optimizer = dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, schedule="warmup_cosine", warmup_steps=200,
                     end_lr=1e-5, grad_clip_norm=1.0)
  c.ema_decay = 0.999
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.sample_every = 500
  c.num_samples = 64
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3

  if arg == "smoke":
    c.total_steps = 2
    c.batch_size = 4
    c.data.image_size = 8
    c.model.base_channels = 8
    c.model.channel_mult = (1, 2)
    c.model.attention_resolutions = (4,)
    c.method.num_timesteps = 20
    c.method.sample_steps = 2
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 4
  return c
