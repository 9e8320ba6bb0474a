"""Data sources and the deterministic, resumable, process-sharded loader."""

import gzip
import struct

import ml_collections
import numpy as np
import pytest
from PIL import Image

from artjax.data import Loader, make_preprocess, make_source
from artjax.data.sources import ArraySource
from artjax.errors import ArtjaxError


def write_idx(path, array):
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_idx_dir(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (("train", 20), ("t10k", 6)):
    write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
    write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
  return tmp_path


def cfg(**kw):
  return ml_collections.ConfigDict(kw)


def test_idx_source_reads_what_was_written(tiny_idx_dir):
  src = make_source(cfg(name="mnist", dir=str(tiny_idx_dir)), "train")
  assert len(src) == 20 and src[3]["image"].shape == (28, 28, 1) and src[3]["label"] == 3
  assert len(make_source(cfg(name="fashion_mnist", dir=str(tiny_idx_dir)), "test")) == 6


def test_idx_source_errors(tmp_path, tiny_idx_dir):
  with pytest.raises(ArtjaxError, match="needs config.data.dir"):
    make_source(cfg(name="mnist", dir=""), "train")
  with pytest.raises(ArtjaxError, match="does not exist"):
    make_source(cfg(name="mnist", dir=str(tmp_path / "missing")), "train")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ArtjaxError, match="train-images-idx3-ubyte"):
    make_source(cfg(name="mnist", dir=str(empty)), "train")
  (tiny_idx_dir / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
  with pytest.raises(ArtjaxError, match="cannot read IDX"):
    make_source(cfg(name="mnist", dir=str(tiny_idx_dir)), "train")
  with pytest.raises(ArtjaxError, match="splits"):
    make_source(cfg(name="mnist", dir=str(tiny_idx_dir)), "validation")


def test_real_mnist_counts(mnist_dir):
  src = make_source(cfg(name="mnist", dir=str(mnist_dir)), "train")
  assert len(src) == 60000
  assert np.bincount(src.labels).tolist()[:3] == [5923, 6742, 5958]  # the published label counts


def test_digits_source_needs_no_download():
  src = make_source(cfg(name="digits"), "train")
  assert len(src) == 1797 and src[0]["image"].shape == (8, 8, 1) and src.images.max() == 255


def test_image_folder_composites_alpha_and_resizes(tmp_path):
  (tmp_path / "a").mkdir()
  rgba = np.zeros((10, 12, 4), np.uint8)
  rgba[..., 0] = 255
  rgba[:5, :, 3] = 255  # top half opaque red, bottom half transparent
  Image.fromarray(rgba).save(tmp_path / "a" / "x.png")
  Image.fromarray(np.full((6, 6, 3), 40, np.uint8)).save(tmp_path / "y.jpg")
  c = cfg(name="image_folder", dir=str(tmp_path), image_size=8, channels=3, value_range=(0.0, 1.0),
          background=(0, 0, 255))
  src = make_source(c, "train")
  assert len(src) == 2
  x = make_preprocess(c)(src[0], 0)["image"]
  assert x.shape == (8, 8, 3)
  np.testing.assert_allclose(x[0, 0], [1, 0, 0], atol=0.02)   # red where opaque
  np.testing.assert_allclose(x[-1, 0], [0, 0, 1], atol=0.02)  # background blue where transparent
  (tmp_path / "empty").mkdir()
  with pytest.raises(ArtjaxError, match="no image files"):
    make_source(cfg(name="image_folder", dir=str(tmp_path / "empty")), "train")


def test_preprocess_range_and_flip():
  ex = {"image": np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 17, "label": 1}
  pre = make_preprocess(cfg(value_range=(-1.0, 1.0), random_flip=True))
  outs = [pre(ex, (7, s))["image"] for s in range(20)]
  assert all(o.min() == -1.0 and o.max() == 1.0 for o in outs)
  # Every output is the image or its mirror, and both occur.
  mirrored = [np.array_equal(o, outs[0][:, ::-1]) for o in outs]
  assert all(m or np.array_equal(o, outs[0]) for m, o in zip(mirrored, outs)) and 0 < sum(mirrored) < 20


def numbered_source(n):
  return ArraySource(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n))


def ident(ex, seed):
  return {"label": ex["label"]}


def test_loader_epochs_cover_every_example_once():
  loader = Loader(numbered_source(10), ident, global_batch=4, seed=3, process_index=0, process_count=1)
  seq = np.concatenate([loader.batch(k)["label"] for k in range(5)])  # 20 = two epochs
  assert sorted(seq[:10]) == list(range(10)) and sorted(seq[10:]) == list(range(10))
  assert not np.array_equal(seq[:10], seq[10:]), "each epoch gets a fresh order"


def test_loader_is_deterministic_and_resumes_at_any_step():
  a = Loader(numbered_source(37), ident, 8, seed=1, process_index=0, process_count=1)
  b = Loader(numbered_source(37), ident, 8, seed=1, process_index=0, process_count=1)
  full = [x["label"] for x in a.iterate(0, 12)]
  resumed = [x["label"] for x in b.iterate(7, 12)]
  for k in range(7, 12):
    np.testing.assert_array_equal(full[k], resumed[k - 7])
  other_seed = Loader(numbered_source(37), ident, 8, seed=2, process_index=0, process_count=1)
  assert not np.array_equal(other_seed.batch(0)["label"], full[0])


def test_processes_split_the_same_global_batch():
  one = Loader(numbered_source(50), ident, 12, seed=0, process_index=0, process_count=1)
  parts = [Loader(numbered_source(50), ident, 12, seed=0, process_index=p, process_count=3) for p in range(3)]
  for step in (0, 4, 9):
    joined = np.concatenate([p.batch(step)["label"] for p in parts])
    np.testing.assert_array_equal(joined, one.batch(step)["label"])
  with pytest.raises(ArtjaxError, match="not divisible"):
    Loader(numbered_source(50), ident, 10, seed=0, process_index=0, process_count=3)
