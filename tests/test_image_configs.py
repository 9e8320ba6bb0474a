"""The GPU-scale image configs start: CIFAR-10 / CelebA through TFDS (mock_data), RGBA art folders."""

import numpy as np
import pytest
from PIL import Image

from artjax.train.loop import train
from conftest import smoke_config


@pytest.mark.parametrize("path,image_size", [("configs/diffusion/cifar10_ddpm.py:smoke", 32),
                                             ("configs/diffusion/celeba64_ddpm.py:smoke", 16)])
def test_tfds_configs_train_on_mock_data(path, image_size, tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  config = smoke_config(path)
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    state = train(config, tmp_path, progress=False)
  assert int(state.step) == config.total_steps
  grid = Image.open(tmp_path / "samples" / "step_0000002.png")
  assert grid.mode == "RGB"
  assert config.data.image_size == image_size


def _emoji_folder(tmp_path):
  folder = tmp_path / "emoji"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(6):  # transparent background, an opaque red-ish disc: like an emoji
    img = np.zeros((20, 20, 4), np.uint8)
    yy, xx = np.mgrid[:20, :20]
    disc = (yy - 10) ** 2 + (xx - 10) ** 2 < 36 + 4 * i
    img[disc] = (200 + 5 * i, rng.integers(0, 80), 40, 255)
    Image.fromarray(img, "RGBA").save(folder / f"e{i}.png")
  return folder


def test_rgba_folder_config_composites_and_trains(tmp_path):
  folder = _emoji_folder(tmp_path)
  config = smoke_config("configs/diffusion/twemoji_ddpm.py:smoke", **{"data.dir": str(folder)})
  from artjax import data

  loader = data.Loader(data.make_source(config.data, "train"), data.make_preprocess(config.data), 4, 0)
  x = loader.batch(0)["image"]
  assert x.shape == (4, 8, 8, 3)
  np.testing.assert_allclose(x[:, 0, 0], 1.0)  # corners were transparent: white background in [-1, 1]
  state = train(config, tmp_path / "run", progress=False)
  assert int(state.step) == 2 and (tmp_path / "run" / "samples" / "step_0000002.png").is_file()


def test_saved_config_records_an_absolute_data_dir(tmp_path, monkeypatch):
  _emoji_folder(tmp_path)
  monkeypatch.chdir(tmp_path)
  from artjax.train.loop import Trainer

  trainer = Trainer(smoke_config("configs/diffusion/twemoji_ddpm.py:smoke", **{"data.dir": "emoji"}), tmp_path / "run")
  assert trainer.config.data.dir == str(tmp_path / "emoji")  # sampling/evaluation may run from elsewhere
