r"""DDPM on MNIST (28x28): a small UNet, eps-prediction, linear schedule, T=1000, EMA weights; DDIM sampling.

  python -m artjax.train --config configs/diffusion/mnist_ddpm.py --workdir runs/mnist_ddpm \
      --config.data.dir=/path/to/mnist      # the four original IDX .gz files
  python -m artjax.sample --workdir runs/mnist_ddpm --sampler ddim --steps 50 --out grid.png
  python -m artjax.evaluate --workdir runs/mnist_ddpm --num 10000 --feature_net runs/classifier_mnist

Class-conditional with classifier-free guidance: --config.model.num_classes=10 (then sample with
--label 8 --guidance 3). Fashion-MNIST: --config.data.name=fashion_mnist --config.data.dir=...
The UNet is a scaled-down DDPM one (base 16 vs 128 channels, 1 res block per level,
1.4 GFLOP/example/step; 0.7M params) so that it trains
on a 2-core CPU; `:smoke` shrinks it to a few steps of a tiny model (tests). Results: experiments/.
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 3000  # 3.2 epochs at batch 64
  c.batch_size = 64
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="mnist", dir="", split="train", image_size=28, channels=1,
                value_range=(-1.0, 1.0), random_flip=False, shuffle=True, num_threads=2)
  c.model = dict(name="unet", channels=1, base_channels=16, channel_mult=(1, 2, 4), num_res_blocks=1,
                 attention_resolutions=(7,), num_heads=1, dropout=0.0, num_classes=0, norm_groups=8, dtype="float32")
  c.method = dict(name="diffusion", num_timesteps=1000, schedule="linear", prediction="eps",
                  cond_dropout=0.1,               # used only when model.num_classes > 0
                  sampler="ddim", sample_steps=50, eta=0.0, guidance=None)
  c.optimizer = dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, schedule="warmup_cosine", warmup_steps=200,
                     end_lr=1e-5, grad_clip_norm=1.0)
  c.ema_decay = 0.999
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.sample_every = 1000
  c.num_samples = 64
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.eval = dict(feature_net="", num_samples=10000, sample_options=dict(sampler="ddim", steps=50))

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 8
    c.model.base_channels = 8
    c.model.channel_mult = (1, 2)
    c.model.attention_resolutions = (14, 8)
    c.method.num_timesteps = 20
    c.method.sample_steps = 5
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 4
    c.eval.sample_options = dict(sampler="ddim", steps=5)
  return c
