r"""Quickstart: DCGAN on scikit-learn's bundled 8x8 digits, upsampled to 16x16 (no download; ~3 min on 2 CPUs).

  python -m artjax.train --config configs/gan/digits_dcgan.py --workdir runs/quickstart

Samples land in runs/quickstart/samples/. `:smoke` shrinks it for tests.
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 2000
  c.batch_size = 64
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="digits", dir="", split="train", image_size=16, channels=1,
                value_range=(-1.0, 1.0), random_flip=False, shuffle=True, num_threads=2)
  c.model = dict(name="dcgan", dtype="float32", image_size=16, channels=1, base_channels=32, disc_base_channels=32,
                 upsample="resize", gen_norm="batch", disc_norm="batch")
  c.method = dict(name="gan", latent_dim=32, loss="non_saturating")
  c.optimizer = dict(name="adam", lr=2e-4, b1=0.5, b2=0.999, schedule="constant")
  c.ema_decay = 0.0
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.sample_every = 500
  c.num_samples = 64
  c.checkpoint_every = 500
  c.keep_checkpoints = 2

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 8
    c.model.base_channels = c.model.disc_base_channels = 4
    c.method.latent_dim = 8
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 4
  return c
