r"""The classic MNIST CNN classifier: the feature net of `artjax.evaluate`'s FID / IS / precision-recall.

  python -m artjax.train --config configs/eval/classifier_mnist.py --workdir runs/classifier_mnist \
      --config.data.dir=/path/to/mnist      # the four original IDX .gz files

Fashion-MNIST: the same config with --config.data.name=fashion_mnist --config.data.dir=/path/to/fashion_mnist.
Then: python -m artjax.evaluate --workdir runs/mnist_dcgan --feature_net runs/classifier_mnist.
`:smoke` shrinks it to a few steps of a tiny model (tests).
"""

import ml_collections


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 1800  # ~1 epoch; ~145 ms/step on 2 shared CPU cores (tools/bench_train.py)
  c.batch_size = 32  # small batches: more updates per example, the better trade on a CPU budget
  c.grad_accum_steps = 1  # micro-batches per step (gradients averaged in the step)

  # value_range (0, 1) as in the Keras example; the evaluator maps any generator's range onto it.
  c.data = dict(name="mnist", dir="", split="train", image_size=28, channels=1,
                value_range=(0.0, 1.0), random_flip=False, shuffle=True, num_threads=2)
  c.model = dict(name="cnn_classifier", dtype="float32", num_classes=10, conv_channels=(32, 64), hidden=128,
                 conv_dropout=0.25, hidden_dropout=0.5)
  c.method = dict(name="classifier")
  c.optimizer = dict(name="adam", lr=1e-3, b1=0.9, b2=0.999, schedule="cosine", warmup_steps=0, end_lr=0.0)
  c.ema_decay = 0.0  # the evaluator uses the raw weights
  c.mesh = dict(data=-1, fsdp=1, tensor=1)  # devices per axis; -1: the rest
  c.sharding = dict(strategy="logical", rules=None, fsdp_min_size=2**14)  # rules None: sharding.DEFAULT_RULES

  c.log_every = 100
  c.sample_every = 0  # a classifier does not sample
  c.num_samples = 0
  c.checkpoint_every = 600
  c.keep_checkpoints = 1

  if arg == "smoke":
    c.total_steps = 4
    c.batch_size = 8
    c.model.conv_channels = (8, 16)
    c.model.hidden = 32
    c.log_every = c.checkpoint_every = 2
  return c
