"""Writers that turn a method's samples into files, selected by the method's `output_kind`."""

import json
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


write_images.suffix = ".png"


@WRITERS.register("text")
def write_texts(samples, path, config, meta=None) -> pathlib.Path:
  """`.txt` -> the texts separated by a marked line; `.json` -> {"samples": [...], **meta} (UTF-8, readable CJK)."""
  del config
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  texts = [str(t) for t in samples]
  if path.suffix == ".txt":
    if len(texts) == 1:
      body = texts[0]
    else:
      body = "\n\n".join(f"----- sample {i} -----\n{t}" for i, t in enumerate(texts))
    path.write_text(body + "\n", encoding="utf-8")
  elif path.suffix == ".json":
    path.write_text(json.dumps({**(meta or {}), "samples": texts}, ensure_ascii=False, indent=2) + "\n",
                    encoding="utf-8")
  else:
    raise ArtjaxError(f"cannot write text to {str(path)!r}: use a .txt or .json path")
  return path


write_texts.suffix = ".txt"


def suffix(kind: str) -> str:
  """The file suffix of `kind`'s default format (what the training loop writes its samples as)."""
  return WRITERS.get(kind).suffix


def write(kind: str, samples, path, config, **kwargs):
  return WRITERS.get(kind)(samples, path, config, **kwargs)
