r"""DDPM on CIFAR-10 (32x32 RGB) with the hyper-parameters of Ho et al. 2020 (their 35.7M-param model, FID 3.17).

  python -m artjax.train --config configs/diffusion/cifar10_ddpm.py --workdir runs/cifar10_ddpm \
      --config.data.tfds_data_dir=/path/to/tensorflow_datasets
  python -m artjax.evaluate --workdir runs/cifar10_ddpm --inception pt_inception.npz --num 50000

For GPUs: prepare the data once where there is internet with
`tfds build cifar10 --file_format=array_record --data_dir=/path/to/tensorflow_datasets`.
Paper settings: UNet ch 128, mult (1,2,2,2), 2 res blocks, attention at 16x16, dropout 0.1; T=1000,
linear betas 1e-4..0.02, eps-prediction; Adam 2e-4, warm-up 5000, grad clip 1, batch 128, 800k steps,
EMA 0.9999, random horizontal flips. FID needs the Inception weights (`--inception`, see
tools/convert_inception.py) to be comparable with papers. `:smoke` is a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 800_000
  c.batch_size = 128
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="tfds", dir="", tfds_name="cifar10", tfds_data_dir="", split="train",
                image_size=32, channels=3, value_range=(-1.0, 1.0), random_flip=True, shuffle=True,
                num_threads=8)
  c.model = dict(name="unet", dtype="float32", channels=3, base_channels=128, channel_mult=(1, 2, 2, 2),
                 num_res_blocks=2,
                 attention_resolutions=(16,), num_heads=1, dropout=0.1, num_classes=0, norm_groups=32)
  c.method = dict(name="diffusion", num_timesteps=1000, schedule="linear", prediction="eps",
                  cond_dropout=0.1, sampler="ddim", sample_steps=100, eta=0.0, guidance=None)
  c.optimizer = dict(name="adam", lr=2e-4, b1=0.9, b2=0.999, schedule="constant", warmup_steps=5000,
                     grad_clip_norm=1.0)
  c.ema_decay = 0.9999
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 100
  c.sample_every = 10_000
  c.num_samples = 64
  c.checkpoint_every = 10_000
  c.keep_checkpoints = 3
  c.eval = dict(feature_net="", num_samples=50_000, sample_options=dict(sampler="ddim", steps=100))

  if arg == "smoke":
    c.total_steps = 2
    c.batch_size = 4
    c.data.num_threads = 1
    c.model.base_channels = 8
    c.model.channel_mult = (1, 2)
    c.model.num_res_blocks = 1
    c.method.num_timesteps = 20
    c.method.sample_steps = 2
    c.optimizer.warmup_steps = 1
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 4
    c.eval.sample_options = dict(sampler="ddim", steps=2)
  return c
