"""Writers that turn a method's samples into files, selected by the method's `output_kind`."""

import pathlib

import numpy as np

from artjax.errors import ArtjaxError
from artjax.registry import Registry
from artjax.utils import images

WRITERS = Registry("output writer")


@WRITERS.register("image")
def write_images(samples, path, config, ncol=None) -> pathlib.Path:
  """`.png` -> one grid (`ncol` columns); `.npy` -> uint8 array (N, H, W, C). Samples are in config.data.value_range."""
  path = pathlib.Path(path)
  x = images.to_uint8(np.asarray(samples), tuple(config.data.get("value_range", (-1.0, 1.0))))
  path.parent.mkdir(parents=True, exist_ok=True)
  if path.suffix == ".npy":
    np.save(path, x)
  elif path.suffix == ".png":
    h = x.shape[1]
    images.save_png(path, images.make_grid(x, ncol), upscale=max(1, 64 // h))
  else:
    raise ArtjaxError(f"cannot write images to {str(path)!r}: use a .png (grid) or .npy (array) path")
  return path


def write(kind: str, samples, path, config, **kwargs):
  return WRITERS.get(kind)(samples, path, config, **kwargs)
