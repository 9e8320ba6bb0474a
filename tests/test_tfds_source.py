"""The 'tfds' data source, offline and without TensorFlow, on a tiny dataset built in a tmp dir."""

import pathlib
import socket
import tempfile

import ml_collections
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

import tiny_tfds_builder as tiny  # noqa: E402  (tests/ is on sys.path: pytest's default import mode)

from artjax.data import make_source  # noqa: E402
from artjax.errors import ArtjaxError  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def _use_tmpdir(mp, path: pathlib.Path):
  """TFDS leaves `tmp*tfds` folders in the temp dir; send them to `path`.

  `tempfile` caches the temp dir on first use, so setting TMPDIR alone would change nothing.
  """
  path.mkdir(parents=True, exist_ok=True)
  mp.setenv("TMPDIR", str(path))
  mp.setattr(tempfile, "tempdir", str(path))


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
  """Data dir holding the prepared tiny dataset (array_record), built once for this module."""
  root = tmp_path_factory.mktemp("tiny_tfds")
  with pytest.MonkeyPatch.context() as mp:
    _use_tmpdir(mp, root / "tmp")
    tiny.build(root / "data")
  return root / "data"


@pytest.fixture(autouse=True)
def _tmpdir_and_no_network(tmp_path, monkeypatch):
  """Every test: temp files under tmp_path, and any attempt to open a network connection fails it."""
  _use_tmpdir(monkeypatch, tmp_path / "tmp")
  attempts = []

  def connect(self, address):
    attempts.append(address)
    raise OSError(f"test forbids network access (to {address!r})")

  monkeypatch.setattr(socket.socket, "connect", connect)
  monkeypatch.setattr(socket.socket, "connect_ex", connect)
  yield
  assert not attempts, f"tried to reach the network: {attempts}"


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(name="tfds", **kw))


def test_tiny_dataset_is_array_record(tiny_data_dir):
  version_dir = tiny_data_dir / tiny.NAME / "1.0.0"
  assert (version_dir / "dataset_info.json").is_file()
  assert sorted(p.name for p in version_dir.glob("*.array_record-*")) == [
      f"{tiny.NAME}-test.array_record-00000-of-00001",
      f"{tiny.NAME}-train.array_record-00000-of-00001",
  ]


@pytest.mark.parametrize("split,first,n", [("train", 0, tiny.NUM_TRAIN),
                                           ("test", tiny.NUM_TRAIN, tiny.NUM_TEST),
                                           ("train[:5]", 0, 5)])
def test_reads_examples(tiny_data_dir, split, first, n):
  src = make_source(_cfg(tfds_name=tiny.NAME, tfds_data_dir=str(tiny_data_dir)), split)
  assert len(src) == n
  for i in range(n):
    ex = src[i]
    assert set(ex) == {"image", "label"}
    assert ex["image"].dtype == np.uint8 and ex["image"].shape == (8, 8, 1)
    np.testing.assert_array_equal(ex["image"], np.full((8, 8, 1), tiny.pixel_value(first + i), np.uint8))
    assert ex["label"].dtype == np.int32 and int(ex["label"]) == tiny.label(first + i)


def test_no_label_key(tiny_data_dir):
  src = make_source(_cfg(tfds_name=tiny.NAME, tfds_data_dir=str(tiny_data_dir), label_key=""), "train")
  assert set(src[1]) == {"image"}


def test_unprepared_dataset_is_one_line_error_and_downloads_nothing(tmp_path, monkeypatch):
  def no_download(self, *a, **kw):
    raise AssertionError("download_and_prepare must not be called")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
  empty = tmp_path / "empty_data_dir"
  empty.mkdir()
  with pytest.raises(ArtjaxError) as err:
    make_source(_cfg(tfds_name="mnist", tfds_data_dir=str(empty)), "train")
  msg = str(err.value)
  assert "mnist" in msg and str(empty) in msg and "not prepared" in msg
  assert "\n" not in msg
  assert list(empty.iterdir()) == []  # nothing downloaded or created


def test_unknown_dataset_is_one_line_error(tmp_path):
  with pytest.raises(ArtjaxError, match="no_such_dataset_xyz") as err:
    make_source(_cfg(tfds_name="no_such_dataset_xyz", tfds_data_dir=str(tmp_path)), "train")
  assert "\n" not in str(err.value)


def test_unknown_split_is_one_line_error(tiny_data_dir):
  with pytest.raises(ArtjaxError, match="bogus") as err:
    make_source(_cfg(tfds_name=tiny.NAME, tfds_data_dir=str(tiny_data_dir)), "bogus")
  msg = str(err.value)
  assert "\n" not in msg and tiny.NAME in msg and "not prepared" not in msg


@pytest.mark.parametrize("name", [None, ""])
def test_missing_tfds_name(name):
  cfg = _cfg() if name is None else _cfg(tfds_name=name)
  with pytest.raises(ArtjaxError, match="tfds_name"):
    make_source(cfg, "train")


def test_train_end_to_end(tiny_data_dir, tmp_path):
  from artjax.train import loop

  from artjax.utils.config import load_config

  config = load_config(str(REPO / "configs" / "gan" / "digits_dcgan.py:smoke"))
  with config.unlocked():
    config.data.name = "tfds"
    config.data.tfds_name = tiny.NAME
    config.data.tfds_data_dir = str(tiny_data_dir)
  config.data.image_size = 16  # the model's size; the 8x8 images are resized by the preprocessing.
  workdir = tmp_path / "run"
  state = loop.train(config, workdir, progress=False)
  assert int(state.step) == 4
  assert (workdir / "checkpoints" / "4").is_dir()
