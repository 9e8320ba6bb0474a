"""Random-access data sources (grain's RandomAccessDataSource protocol), registered by name.

Every source yields dicts of numpy arrays: images as uint8 (H, W, C) plus an int `label` where the
dataset has one. Each takes the `config.data` section and a split name.
"""

import gzip
import os
import pathlib
import struct

import numpy as np
from PIL import Image

from artjax.errors import ArtjaxError
from artjax.registry import Registry

SOURCES = Registry("data source")


# Class names of labelled datasets, by source name (or TFDS name): what a prompt like "sneaker" maps to.
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "digits": [str(i) for i in range(10)],
    "fashion_mnist": ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def class_names(data_cfg) -> list[str] | None:
  """`data_cfg.class_names` if set, else the known names of the dataset's classes, else None."""
  given = data_cfg.get("class_names", None)
  if given:
    return [str(n) for n in given]
  return CLASS_NAMES.get(data_cfg.get("tfds_name", None) or data_cfg.get("name", None))


def make_source(data_cfg, split: str):
  """Builds the source named by `data_cfg.name` for `split`."""
  return SOURCES.get(data_cfg.name)(data_cfg, split)


class ArraySource:
  """In-memory arrays: `images` uint8 (N, H, W, C) and optional int `labels` (N,)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray | None = None):
    self.images = images
    self.labels = labels

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    ex = {"image": self.images[i]}
    if self.labels is not None:
      ex["label"] = np.int32(self.labels[i])
    return ex

  def __repr__(self):
    return f"ArraySource(n={len(self)}, image_shape={self.images.shape[1:]})"


def _require_dir(data_cfg, what: str) -> pathlib.Path:
  d = data_cfg.get("dir")
  if not d:
    raise ArtjaxError(f"data source {data_cfg.name!r} needs config.data.dir: a directory of {what}")
  p = pathlib.Path(os.path.expanduser(d))
  if not p.is_dir():
    raise ArtjaxError(f"config.data.dir {str(p)!r} does not exist or is not a directory (expected {what})")
  return p


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads an IDX file (the original MNIST format), gzipped or not."""
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise ArtjaxError(f"cannot read IDX file {str(path)!r}: {e}") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ArtjaxError(f"{str(path)!r} is not an unsigned-byte IDX file (bad magic number)")
  ndim = data[3]
  dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
  arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if arr.size != int(np.prod(dims)):
    raise ArtjaxError(f"{str(path)!r} is truncated: header says {dims}, found {arr.size} bytes")
  return arr.reshape(dims)


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@SOURCES.register("mnist")
@SOURCES.register("fashion_mnist")
def idx_source(data_cfg, split: str) -> ArraySource:
  """MNIST / Fashion-MNIST from the four original IDX files (`.gz` or not) in `config.data.dir`."""
  if split not in _IDX_FILES:
    raise ArtjaxError(f"{data_cfg.name} has splits 'train' and 'test', not {split!r}")
  root = _require_dir(data_cfg, "the MNIST IDX files")
  arrays = []
  for stem in _IDX_FILES[split]:
    found = [root / (stem + ext) for ext in (".gz", "") if (root / (stem + ext)).is_file()]
    if not found:
      raise ArtjaxError(f"{str(root)!r} has no {stem}.gz (expected the four IDX files of {data_cfg.name})")
    arrays.append(read_idx(found[0]))
  images, labels = arrays
  if images.ndim != 3 or len(images) != len(labels):
    raise ArtjaxError(f"IDX files in {str(root)!r} disagree: images {images.shape}, labels {labels.shape}")
  return ArraySource(images[..., None], labels.astype(np.int32))


@SOURCES.register("digits")
def digits_source(data_cfg, split: str) -> ArraySource:
  """scikit-learn's bundled 8x8 handwritten digits (1,797 images): works right after pip install.

  Split 'train' is all 1,797 images (it is the quickstart's dataset); 'test' is the last 297.
  """
  from sklearn.datasets import load_digits

  d = load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = d.target.astype(np.int32)
  if split == "test":
    images, labels = images[-297:], labels[-297:]
  elif split != "train":
    raise ArtjaxError(f"digits has splits 'train' and 'test', not {split!r}")
  return ArraySource(images, labels)


_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class ImageFolderSource:
  """Image files under a directory (recursive, sorted); sub-directory names become labels if asked."""

  def __init__(self, data_cfg, split: str):
    root = _require_dir(data_cfg, "image files")
    self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_EXTS and p.is_file())
    if not self.files:
      raise ArtjaxError(f"config.data.dir {str(root)!r} holds no image files ({', '.join(_IMAGE_EXTS)})")
    self.use_labels = data_cfg.get("folder_labels", False)
    classes = sorted({p.parent.relative_to(root).as_posix() for p in self.files})
    self.class_index = {c: i for i, c in enumerate(classes)}
    self.root = root
    self.split = split

  def __len__(self):
    return len(self.files)

  def __getitem__(self, i):
    path = self.files[i]
    try:
      with Image.open(path) as im:
        if im.mode in ("I;16", "I;16B", "I", "F"):  # high bit depth greyscale: rescale, don't clip
          a = np.asarray(im, np.float64)
          im = Image.fromarray(np.round(255 * (a - a.min()) / max(a.max() - a.min(), 1e-9)).astype(np.uint8))
        im = im.convert("RGBA") if (im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info) \
            else im.convert("RGB")
        image = np.asarray(im, np.uint8)
    except OSError as e:
      raise ArtjaxError(f"cannot decode image {str(path)!r}: {e}") from None
    ex = {"image": image}
    if self.use_labels:
      ex["label"] = np.int32(self.class_index[path.parent.relative_to(self.root).as_posix()])
    return ex

  def __repr__(self):
    return f"ImageFolderSource({str(self.root)!r}, n={len(self)})"


SOURCES.register("image_folder")(ImageFolderSource)


class TfdsSource:
  """A TFDS dataset already prepared in `config.data.tfds_data_dir` (or TFDS's default dir).

  Read with `tfds.data_source` (array_record, no TensorFlow). Never downloads: prepare the dataset
  with `tfds build NAME --file_format=array_record` on a machine with internet (the default format,
  tfrecord, has no random access), then point `tfds_data_dir` at it.
  """

  def __init__(self, data_cfg, split: str):
    import tensorflow_datasets as tfds

    name = data_cfg.get("tfds_name")
    if not name:
      raise ArtjaxError("data source 'tfds' needs config.data.tfds_name (e.g. 'cifar10')")
    data_dir = data_cfg.get("tfds_data_dir") or None
    try:
      self.ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # TFDS raises several types; tell "not prepared" apart from the rest.
      where = data_dir or "the default TFDS data dir"
      try:
        prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
      except Exception:  # unknown dataset: TFDS's own message below says so
        prepared = None
      if prepared is False:  # TFDS itself blames the file format ("FileFormat.TFRECORD is not supported").
        raise ArtjaxError(f"TFDS dataset {name!r} is not prepared in {where}: run `tfds build {name} "
                          f"--file_format=array_record --data_dir=DIR` where there is internet, then set "
                          f"config.data.tfds_data_dir=DIR") from None
      lines = [l.strip() for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
      # One line: the first, plus the list that follows when it ends "Possible root causes:".
      msg = " ".join(lines) if lines[0].endswith(":") and len(lines) < 10 else lines[0]
      raise ArtjaxError(f"cannot read TFDS dataset {name!r} split {split!r} from {where}: {msg}") from None
    self.image_key = data_cfg.get("image_key", "image")
    self.label_key = data_cfg.get("label_key", "label")

  def __len__(self):
    return len(self.ds)

  def __getitem__(self, i):
    ex = self.ds[i]
    out = {"image": np.asarray(ex[self.image_key], np.uint8)}
    if self.label_key and self.label_key in ex:
      out["label"] = np.int32(ex[self.label_key])
    return out


SOURCES.register("tfds")(TfdsSource)
