"""Configs load, every config documents its command, and bad overrides are one-line errors."""

import pathlib

import pytest

from artjax.errors import ArtjaxError
from artjax.utils.config import load_config
from conftest import ROOT, run_cli

CONFIGS = sorted((ROOT / "configs").rglob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_loads_and_documents_its_command(path: pathlib.Path):
  for arg in (None, "smoke"):
    c = load_config(str(path) + (f":{arg}" if arg else ""))
    for field in ("seed", "total_steps", "batch_size"):
      assert field in c, f"{path} lacks {field}"
    assert "dir" in c.data or "path" in c.data  # where the data lives (text: a file or directory)
  doc = path.read_text().split('"""')[1]
  rel = str(path.relative_to(ROOT))
  assert f"python -m artjax.train --config {rel}" in " ".join(doc.split()), "docstring must start with the command"


def test_smoke_arg_shrinks():
  full, smoke = load_config("configs/gan/mnist_dcgan.py"), load_config("configs/gan/mnist_dcgan.py:smoke")
  assert smoke.total_steps < full.total_steps and smoke.batch_size < full.batch_size


def test_load_config_override_typo():
  with pytest.raises(ArtjaxError, match="batch_sise"):
    load_config("configs/gan/mnist_dcgan.py", {"batch_sise": 3})


@pytest.mark.parametrize("override,expect", [
    ("--config.modle.name=x", "unknown config field 'modle' in an override; did you mean 'model'?"),
    ("--config.batch_sise=3", "unknown config field 'batch_sise' in an override; did you mean 'batch_size'?"),
    ("--config.data.nme=x", "did you mean 'name'?"),
    ("--config.batch_size=abc", "batch_size"),
    ("--config.model.name=nope", "unknown model 'nope'"),
    ("--config.method.name=nope", "unknown method 'nope'"),
    ("--config.data.name=nope", "unknown data source 'nope'"),
])
def test_cli_config_errors_are_one_line(tmp_path, override, expect):
  p = run_cli("-m", "artjax.train", "--config", "configs/gan/digits_dcgan.py:smoke",
              "--workdir", str(tmp_path / "w"), override)
  assert p.returncode == 2, p.stderr
  assert expect in p.stderr
  assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_cli_missing_config_file(tmp_path):
  p = run_cli("-m", "artjax.train", "--config", "configs/nope.py", "--workdir", str(tmp_path))
  assert p.returncode == 2 and "No such file" in p.stderr and "Traceback" not in p.stderr
