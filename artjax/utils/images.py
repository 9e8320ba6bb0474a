"""Image conversions and PNG sample grids."""

import io
import math

import numpy as np
from PIL import Image, PngImagePlugin


def to_uint8(x, value_range=(-1.0, 1.0)) -> np.ndarray:
  """Maps model-space floats in `value_range` to uint8 [0, 255]."""
  lo, hi = value_range
  x = (np.asarray(x, np.float32) - lo) / (hi - lo)
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncol: int | None = None, pad: int = 2, pad_value: int = 0) -> np.ndarray:
  """Tiles uint8 images (N, H, W, C) into one (H', W', C) grid."""
  n, h, w, c = images.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.uint8)
  for i, img in enumerate(images):
    r, col = divmod(i, ncol)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    grid[y:y + h, x:x + w] = img
  return grid


def png_bytes(image: np.ndarray, upscale: int = 1, text: dict | None = None) -> bytes:
  """A uint8 (H, W, C) image as PNG bytes; `upscale` enlarges small grids (nearest) for viewing;
  `text` entries become UTF-8 (iTXt) chunks, e.g. the provenance of a sample."""
  img = image[..., 0] if image.shape[-1] == 1 else image
  pil = Image.fromarray(img)
  if upscale > 1:
    pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.NEAREST)
  info = PngImagePlugin.PngInfo()
  for key, value in (text or {}).items():
    info.add_itxt(key, value)
  buf = io.BytesIO()
  pil.save(buf, format="PNG", pnginfo=info)
  return buf.getvalue()
