"""Class conditioning of the image families (GAN, WGAN-GP, VAE, diffusion), written once.

config.model.num_classes > 0 makes a model class-conditional on int32 labels 0..num_classes - 1:
training reads batch["label"] and sampling takes the `label` option (an int, one int per sample, or
None for class-balanced labels). The network side is `artjax.models.layers.label_embedding`. That the
data's labels fit num_classes is checked once for every family by the training loop. Registers no method.
"""

import jax.numpy as jnp

from artjax.errors import ArtjaxError
from artjax.methods.base import sample_labels


def num_classes(config) -> int:
  """config.model.num_classes (absent: 0, unconditional), checked >= 0."""
  n = int(config.model.get("num_classes", 0))
  if n < 0:
    raise ArtjaxError(f"config.model.num_classes must be >= 0 (0: unconditional), got {n}")
  return n


def batch_labels(config, batch):
  """batch["label"], (B,) int32, when the model is class-conditional; else None."""
  n = num_classes(config)
  if not n:
    return None
  if "label" not in batch:
    raise ArtjaxError(f"config.model.num_classes={n} (class-conditional) but the data source "
                      f"{config.data.get('name', '?')!r} (config.data.name) yields no labels: use labelled "
                      f"data (for image_folder, config.data.folder_labels=True) or config.model.num_classes=0")
  return batch["label"]


def init_labels(config, batch):
  """(B,) int32 zeros to initialize a class-conditional model with (B: the batch's); None when unconditional.

  Families initialize on the first real batch, so checking its labels here (`batch_labels`) makes a data
  source without labels a config error at start-up, not a KeyError inside the first traced step.
  """
  if batch_labels(config, batch) is None:
    return None
  return jnp.zeros(batch["image"].shape[:1], jnp.int32)


def sampling_labels(config, label, num: int):
  """The labels `num` samples are conditioned on, (num,) int32; None when unconditional.

  label: an int (every sample), a (num,) array (one each), a traced scalar (every sample; the caller
  range-checks it), or None for class-balanced labels arange(num) % num_classes (`base.sample_labels`).
  An unconditional model refuses any label but None.
  """
  n = num_classes(config)
  if n:
    return sample_labels(label, num, n)
  if label is not None:
    raise ArtjaxError(f"this {config.method.name!r} model is unconditional (config.model.num_classes=0): "
                      f"it takes no label")
  return None
