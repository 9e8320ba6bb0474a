r"""DDPM on CelebA at 64x64 (centre-cropped, as in the DDIM paper's CelebA experiments), for GPUs.

  python -m artjax.train --config configs/diffusion/celeba64_ddpm.py --workdir runs/celeba64_ddpm \
      --config.data.tfds_data_dir=/path/to/tensorflow_datasets

Prepare once where there is internet: `tfds build celeb_a --file_format=array_record --data_dir=...`
(the 178x218 images are centre-cropped to 178x178 and resized to 64). UNet as in DDIM's CelebA model:
ch 128, mult (1,2,2,2,4), 2 res blocks, attention at 16x16, dropout 0.1; T=1000 linear; Adam 2e-4,
warm-up 5000, batch 128, EMA 0.9999. `:smoke` is a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 500_000
  c.batch_size = 128
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  c.data = dict(name="tfds", dir="", tfds_name="celeb_a", tfds_data_dir="", split="train",
                image_size=64, channels=3, value_range=(-1.0, 1.0), random_flip=True, shuffle=True,
                num_threads=8)
  c.model = dict(name="unet", dtype="float32", channels=3, base_channels=128, channel_mult=(1, 2, 2, 2, 4),
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
    c.data.image_size = 16
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
