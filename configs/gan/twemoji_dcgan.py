r"""DCGAN on emoji art: a folder of RGBA PNGs (e.g. the 3.7k Twemoji 72x72 set) composited on white, 32x32 RGB.

  python -m artjax.train --config configs/gan/twemoji_dcgan.py --workdir runs/twemoji_dcgan \
      --config.data.dir=/path/to/twemoji/72x72
  python -m artjax.sample --workdir runs/twemoji_dcgan --num 64 --out emoji.png
  python -m artjax.sample --workdir runs/twemoji_dcgan --num 6 --interpolate 10 --out walk.png

Any folder of images works (searched recursively; transparency composited onto `data.background`,
non-square images centre-cropped). configs/diffusion/twemoji_ddpm.py is the diffusion version.
`:smoke` shrinks it to a few steps of a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 1500  # 26 epochs of the 3.7k emoji at batch 64
  c.batch_size = 64
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="image_folder", dir="", split="train", image_size=32, channels=3,
                background=(255, 255, 255), value_range=(-1.0, 1.0), random_flip=True, shuffle=True,
                num_threads=2)
  c.model = dict(name="dcgan", dtype="float32", image_size=32, channels=3, base_channels=32, disc_base_channels=64,
                 upsample="resize", gen_norm="batch", disc_norm="batch", num_classes=0)
  c.method = dict(name="gan", bn_recalibration_batches=16, latent_dim=100, loss="non_saturating")
  c.optimizer = dict(name="adam", lr=2e-4, b1=0.5, b2=0.999, schedule="constant")
  c.ema_decay = 0.999
  # Sampling uses the raw weights: at these run lengths they score better than the EMA even with the
  # EMA's BatchNorm statistics re-estimated (FID table in experiments/README.md); --ema samples the EMA.
  c.sample_ema = False
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.sample_every = 500
  c.num_samples = 64
  c.checkpoint_every = 500
  c.keep_checkpoints = 3

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 8
    c.data.image_size = c.model.image_size = 16
    c.model.base_channels = c.model.disc_base_channels = 4
    c.method.latent_dim = 8
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 4
  return c
