"""A tiny TFDS dataset built without TensorFlow, for tests of artjax's 'tfds' data source.

Importing this module registers the builder under NAME with TFDS. Image i is an 8x8x1 uint8 image
filled with `pixel_value(i)`; its label is `label(i)`. Split 'train' holds examples 0..11 and 'test'
examples 12..15, in that order. Images are fed as PNG bytes: encoding numpy arrays would need
TensorFlow.
"""

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

NAME = "artjax_tiny_tfds"
NUM_TRAIN = 12
NUM_TEST = 4
NUM_CLASSES = 3


def pixel_value(i: int) -> int:
  return 10 * i


def label(i: int) -> int:
  return i % NUM_CLASSES


def _png(value: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((8, 8), value, np.uint8), mode="L").save(buf, format="PNG")
  return buf.getvalue()


class ArtjaxTinyTfds(tfds.core.GeneratorBasedBuilder):
  """16 constant 8x8 grayscale images with 3 classes."""

  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self):
    # tfds.core.DatasetInfo directly: `dataset_info_from_configs` reads metadata files (README,
    # CITATIONS.bib) from the builder's *package* directory, and this module is not in a package.
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        # Keep generation order, so record i of a split is example i. (By default TFDS shuffles the
        # examples by a hash of their keys when it writes them: record i is then some other example.)
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {
        "train": self._generate_examples(range(NUM_TRAIN)),
        "test": self._generate_examples(range(NUM_TRAIN, NUM_TRAIN + NUM_TEST)),
    }

  def _generate_examples(self, indices):
    for i in indices:
      yield i, {"image": _png(pixel_value(i)), "label": label(i)}


def build(data_dir) -> None:
  """Prepares the dataset in `data_dir` (array_record files, no TensorFlow, no network)."""
  builder = ArtjaxTinyTfds(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()
