r"""Class-conditional DCGAN on MNIST (28x28): mnist_dcgan.py plus a label embedding joined to z in G and a projection discriminator (Miyato & Koyama 2018).

  python -m artjax.train --config configs/gan/mnist_cdcgan.py --workdir runs/mnist_cdcgan \
      --config.data.dir=/path/to/mnist      # the four original IDX .gz files

Sample one digit with `python -m artjax.sample --workdir runs/mnist_cdcgan --label 8 --out eights.png`
(without --label: class-balanced rows). `:smoke` shrinks it to a few steps of a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 3000  # 6.4 epochs at batch 128
  c.batch_size = 128
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="mnist", dir="", split="train", image_size=28, channels=1,
                value_range=(-1.0, 1.0), random_flip=False, shuffle=True, num_threads=2)
  c.model = dict(name="dcgan", dtype="float32", image_size=28, channels=1, base_channels=32, disc_base_channels=64,
                 upsample="resize", gen_norm="batch", disc_norm="batch", num_classes=10)
  c.method = dict(name="gan", bn_recalibration_batches=16, latent_dim=100, loss="non_saturating")
  c.optimizer = dict(name="adam", lr=2e-4, b1=0.5, b2=0.999, schedule="constant")
  c.ema_decay = 0.999  # EMA of all weights (kept in checkpoints)
  # Sampling uses the raw weights: at these run lengths they score better than the EMA even with the
  # EMA's BatchNorm statistics re-estimated (FID table in experiments/README.md); --ema samples the EMA.
  c.sample_ema = False
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.sample_every = 500
  c.num_samples = 60  # 6 class-balanced rows of 0-9 in the grids
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.eval = dict(feature_net="", num_samples=10000, sample_options={})  # e.g. {"label": 8}: FID of one class

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 8
    c.model.base_channels = c.model.disc_base_channels = 4
    c.method.latent_dim = 8
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 10
  return c
