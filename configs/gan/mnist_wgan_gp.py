r"""WGAN-GP on MNIST (28x28), as in Gulrajani et al. 2017: gradient penalty 10, 5 critic steps per generator step, Adam(1e-4, b1=0, b2=0.9).

  python -m artjax.train --config configs/gan/mnist_wgan_gp.py --workdir runs/mnist_wgan_gp \
      --config.data.dir=/path/to/mnist      # the four original IDX .gz files

One step is one generator update: the batch holds n_critic * m real examples (5 critic steps on m=32
each), so batch_size = 160. The critic uses layer norm: the penalty is per example, batch norm would
couple examples. The critic is 32 channels wide (not DCGAN's 64): the penalty's double backward
through convs is slow on CPU (64 wide: 3.1 s/step, 32 wide: 0.9 s/step on 2 cores). `:smoke` shrinks it to a few steps of a tiny model (tests); results: experiments/README.md.
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 900  # generator steps (~15 min on 2 CPU cores); 4500 critic steps, 2.4 epochs
  c.batch_size = 160  # n_critic * m = 5 * 32
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="mnist", dir="", split="train", image_size=28, channels=1,
                value_range=(-1.0, 1.0), random_flip=False, shuffle=True, num_threads=2)
  c.model = dict(name="dcgan", dtype="float32", image_size=28, channels=1, base_channels=32, disc_base_channels=32,
                 upsample="resize", gen_norm="batch", disc_norm="layer", num_classes=0)
  c.method = dict(name="wgan_gp", bn_recalibration_batches=16, latent_dim=100, n_critic=5, gp_weight=10.0)
  c.optimizer = dict(name="adam", lr=1e-4, b1=0.0, b2=0.9, schedule="constant")  # G and D (optimizer_d: D only)
  c.ema_decay = 0.999  # EMA of all weights, kept in checkpoints (the paper had none: --config.ema_decay=0)
  # Sampling uses the raw weights: at these run lengths they score better than the EMA even with the
  # EMA's BatchNorm statistics re-estimated (FID table in experiments/README.md); --ema samples the EMA.
  c.sample_ema = False
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.sample_every = 150
  c.num_samples = 64
  c.checkpoint_every = 300
  c.keep_checkpoints = 3
  c.eval = dict(feature_net="", num_samples=10000, sample_options={})

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 10  # n_critic 5 * m 2
    c.model.base_channels = c.model.disc_base_channels = 4
    c.method.latent_dim = 8
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 4
    c.eval.num_samples = 16
  return c
