"""Images: PNG grids, one PNG per sample, or a uint8 .npy array."""

import io

import numpy as np

from artjax.encoders import ENCODERS, Encoded, provenance, strict_json, unknown_format
from artjax.utils import images


class ImageEncoder:
  """Images (N, H, W, C) floats in config.data.value_range.

  Formats: grid (one PNG, `layout['ncol']` or square), png (one PNG per sample), npy (uint8 array).
  """

  formats = {"grid": "image/png", "png": "image/png", "npy": "application/x-npy"}
  suffixes = {".png": "grid", ".npy": "npy"}
  default = "grid"
  item_format = "png"  # one encoded work per sample (what the server returns)

  def encode(self, samples, fmt: str, include_prompt: bool = False, upscale: int | None = None) -> list[Encoded]:
    x = images.to_uint8(np.asarray(samples.items), tuple(samples.config.data.get("value_range", (-1.0, 1.0))))
    if fmt == "npy":
      buf = io.BytesIO()
      np.save(buf, x)
      return [Encoded(buf.getvalue(), self.formats[fmt], ".npy")]
    if fmt == "grid":
      grid = images.make_grid(x, samples.layout.get("ncol"))
      up = upscale if upscale is not None else max(1, 64 // x.shape[1])
      return [Encoded(png(grid, provenance(samples, include_prompt), up), "image/png", ".png")]
    if fmt == "png":
      return [Encoded(png(img, provenance(samples, include_prompt, index=i), upscale or 1), "image/png", ".png")
              for i, img in enumerate(x)]
    raise unknown_format(self, fmt)



ENCODERS.register("image")(ImageEncoder())


def png(image: np.ndarray, meta: dict, upscale: int) -> bytes:
  return images.png_bytes(image, upscale, {"artjax": strict_json(meta),  # options may hold CJK
                                           "Software": f"artjax {meta.get('artjax_version', '')}"})
