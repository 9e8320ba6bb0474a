"""Class conditioning, written once (artjax.methods.conditioning): every image family fails the same way."""

from flax.core import meta
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from artjax import methods
from artjax.errors import ArtjaxError
from artjax.train.loop import Trainer
from conftest import smoke_config

DIGITS_16 = {"data.name": "digits", "data.image_size": 16, "model.image_size": 16}
FAMILIES = {  # tiny configs on digits, which yields labels 0..9
    "gan": ("configs/gan/digits_dcgan.py:smoke", {}),
    "wgan_gp": ("configs/gan/mnist_wgan_gp.py:smoke", DIGITS_16),
    "vae": ("configs/vae/mnist_vae.py:smoke", DIGITS_16),
    "diffusion": ("configs/diffusion/mnist_ddpm.py:smoke",
                  {"data.name": "digits", "data.image_size": 8, "model.attention_resolutions": (4,),
                   "method.num_timesteps": 20}),
}


def config_for(family, num_classes, **overrides):
  path, tiny = FAMILIES[family]
  config = smoke_config(path, **{**tiny, **overrides})
  config.unlock()  # digits_dcgan.py has no model.num_classes field
  config.model.num_classes = num_classes
  config.lock()
  return config


def labelled_batch(config, n=8):
  size, channels = config.data.image_size, config.data.channels
  lo, hi = config.data.get("value_range", (-1.0, 1.0))
  return {"image": jax.random.uniform(jax.random.key(0), (n, size, size, channels), minval=lo, maxval=hi),
          "label": jnp.arange(n, dtype=jnp.int32) % 3}


@pytest.mark.parametrize("family", FAMILIES)
def test_unlabelled_data_source_is_a_config_error_at_start_up(family, tmp_path):
  # An image folder without folder_labels yields images only (what twemoji configs train on).
  images = tmp_path / "images"
  images.mkdir()
  for i in range(8):
    Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(images / f"{i}.png")
  config = config_for(family, 3, **{"data.name": "image_folder", "data.dir": str(images)})
  with pytest.raises(ArtjaxError, match=r"config\.model\.num_classes=3 .*data source 'image_folder'"):
    Trainer(config, tmp_path / "run")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_step_on_a_batch_without_labels_is_a_config_error(family):
  # Not a KeyError from inside the traced step (what diffusion raised before).
  config = config_for(family, 3)
  method = methods.build(config)
  batch = labelled_batch(config)
  params, state = meta.unbox(method.init(jax.random.key(1), batch))
  with pytest.raises(ArtjaxError, match=r"config\.model\.num_classes=3 .*yields no labels"):
    method.update(params, state, method.init_opt_state(params), {"image": batch["image"]}, jax.random.key(2))


@pytest.mark.parametrize("family", FAMILIES)
def test_negative_num_classes_is_a_config_error(family):
  with pytest.raises(ArtjaxError, match="num_classes must be >= 0"):
    methods.build(config_for(family, -1))


@pytest.mark.parametrize("family", FAMILIES)
def test_unconditional_models_refuse_a_label(family):
  config = config_for(family, 0)
  method = methods.build(config)
  params, state = meta.unbox(method.init(jax.random.key(1), labelled_batch(config, 2)))
  with pytest.raises(ArtjaxError, match=f"'{config.method.name}' model is unconditional"):
    method.decode(params, state, method.prior(jax.random.key(0), 2), jax.random.key(1), label=1)
