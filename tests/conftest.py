"""Shared fixtures: a private TMPDIR, the offline datasets in ../shared, and CLI runners."""

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_tmpdir(tmp_path, monkeypatch):
  # TFDS, orbax and matplotlib leave temp/cache dirs in TMPDIR; keep them inside pytest's tmp.
  d = tmp_path / "_tmp"
  d.mkdir()
  monkeypatch.setenv("TMPDIR", str(d))
  monkeypatch.setenv("MPLCONFIGDIR", str(d))
  monkeypatch.setattr(tempfile, "tempdir", str(d))  # Python caches the temp dir; env alone is too late.


@pytest.fixture
def mnist_dir():
  d = SHARED_DATA / "mnist"
  if not (d / "train-images-idx3-ubyte.gz").is_file():
    pytest.skip("../shared/data/mnist not available")
  return d


def run_cli(*args, env=None, timeout=300, check=False):
  """Runs `python -m ...` from the project root; returns the CompletedProcess (text)."""
  full_env = {**os.environ, **(env or {})}
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                        text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
  return proc


def smoke_config(path="configs/gan/digits_dcgan.py:smoke", **overrides):
  from artjax.utils.config import load_config

  return load_config(str(ROOT / path), overrides)


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory):
  """Tiny trained text / poetry / image runs shared by the server tests (trained once per session)."""
  from serve_runs import make_runs

  return make_runs(tmp_path_factory.mktemp("served_runs"))
