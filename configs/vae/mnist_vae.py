r"""Convolutional VAE on dynamically binarized MNIST (28x28): Bernoulli decoder, 32-d latent, Adam(1e-3), batch 128.

  python -m artjax.train --config configs/vae/mnist_vae.py --workdir runs/mnist_vae \
      --config.data.dir=/path/to/mnist      # the four original IDX .gz files

Evaluate (FID/IS/precision-recall in a classifier's features, plus the test-split NLL in nats and
bits/dim from the importance-weighted bound (Burda et al. 2016) with K = 1000 samples on 1000 test images):

  python -m artjax.evaluate --workdir runs/mnist_vae --feature_net runs/classifier_mnist \
      --nll_samples 1000 --nll_num 1000     # classifier: configs/eval/classifier_mnist.py

Other data: `--config.data.name=fashion_mnist`; a class-conditional VAE:
`--config.model.num_classes=10` (then `artjax.sample --label 3`); 8-bit data instead of binarized:
`--config.method.likelihood=logistic --config.method.binarize=False --config.data.value_range="(-1.0, 1.0)"`.
`:smoke` shrinks it to a few steps of a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 1200  # 2.6 epochs at batch 128: ~5 min on CPU-2 (bench: ~270 ms/step on a loaded machine)
  c.batch_size = 128
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  # Bernoulli likelihood: pixels in [0, 1], binarized afresh each step (the standard for MNIST NLL).
  c.data = dict(name="mnist", dir="", split="train", image_size=28, channels=1,
                value_range=(0.0, 1.0), random_flip=False, shuffle=True, num_threads=2)
  c.model = dict(name="vae", dtype="float32", image_size=28, channels=1, latent_dim=32, base_channels=32, num_classes=0,
                 label_dim=16)
  c.method = dict(name="vae", likelihood="bernoulli", binarize=True, beta=1.0, nll_chunk=4096)
  c.optimizer = dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, schedule="constant")
  c.ema_decay = 0.999  # samples and NLL use the EMA weights (--config.ema_decay=0: raw weights)
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 50
  c.sample_every = 500
  c.num_samples = 64
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3

  c.eval = dict(feature_net="", num_samples=10000, sample_options={}, nll_samples=1000, nll_num=1000)

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 8
    c.model.base_channels = 4
    c.model.latent_dim = 4
    c.model.label_dim = 4
    c.log_every = c.sample_every = c.checkpoint_every = 2
    c.num_samples = 4
    c.eval.num_samples = 8
    c.eval.nll_samples = 4
    c.eval.nll_num = 8
  return c
