"""The sampling tool: output shape/dtype, determinism per seed, and one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from artjax.train.loop import train
from conftest import run_cli, smoke_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  d = tmp_path_factory.mktemp("run")
  train(smoke_config(), d, progress=False)  # checkpoints at steps 2 and 4
  return d


def sample(workdir, out, *args):
  return run_cli("-m", "artjax.sample", "--workdir", str(workdir), "--out", str(out), *args)


def test_npy_shape_dtype_and_determinism(workdir, tmp_path):
  for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
    p = sample(workdir, tmp_path / f"{name}.npy", "--num", "5", "--seed", seed)
    assert p.returncode == 0, p.stderr
  a, b, c = (np.load(tmp_path / f"{n}.npy") for n in "abc")
  assert a.shape == (5, 16, 16, 1) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert len({x.tobytes() for x in a}) == 5, "samples in a batch must differ"
  # Per-sample keys: chunking (--batch) changes nothing, and a prefix of a larger request is the same.
  p = sample(workdir, tmp_path / "chunked.npy", "--num", "5", "--seed", "1", "--batch", "2")
  assert p.returncode == 0, p.stderr
  np.testing.assert_allclose(np.load(tmp_path / "chunked.npy").astype(int), a.astype(int), atol=1)


def test_png_grid_and_step_choice(workdir, tmp_path):
  p = sample(workdir, tmp_path / "g.png", "--num", "6", "--step", "2", "--batch", "4")
  assert p.returncode == 0, p.stderr
  im = Image.open(tmp_path / "g.png")
  assert im.size[0] > 16 and im.mode == "L"
  meta = json.loads(im.text["artjax"])  # provenance: enough to regenerate the grid
  assert meta["step"] == 2 and meta["seed"] == 0 and meta["num"] == 6 and meta["model"] and meta["artjax_version"]
  latest = sample(workdir, tmp_path / "l.npy", "--num", "3")
  early = sample(workdir, tmp_path / "e.npy", "--num", "3", "--step", "2")
  assert latest.returncode == early.returncode == 0
  assert not np.array_equal(np.load(tmp_path / "l.npy"), np.load(tmp_path / "e.npy"))


def one_line_error(p, expect):
  assert p.returncode == 2, p.stderr
  assert expect in p.stderr, p.stderr
  assert "Traceback" not in p.stderr
  assert len([l for l in p.stderr.splitlines() if l.startswith("error:")]) == 1


def test_errors(workdir, tmp_path):
  one_line_error(sample(workdir, tmp_path / "x.npy", "--step", "3"), "no checkpoint for step 3")
  one_line_error(sample(tmp_path / "nope", tmp_path / "x.npy"), "does not exist")
  (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
  one_line_error(sample(tmp_path / "empty", tmp_path / "x.npy"), "no checkpoints in")
  one_line_error(sample(workdir, tmp_path / "x.gif"), "use a .png")


def test_corrupt_checkpoint(tmp_path):
  train(smoke_config(total_steps=2), tmp_path, progress=False)
  for f in (tmp_path / "checkpoints" / "2" / "model").rglob("*"):
    if f.is_file() and f.parent.name == "d":
      f.write_bytes(b"garbage")
  one_line_error(sample(tmp_path, tmp_path / "x.npy"), "corrupt")
