"""Encoders turn `Samples` into bytes, one registered encoder per output kind.

Each encoder offers named formats; `encode(samples, fmt)` gives a list of `Encoded` (bytes, media
type, file suffix): one item for a whole-batch format (a PNG grid, an .npy array, a .txt/.json file),
one per sample otherwise (`png`). Files (`write`), the training loop's sample grids and the server's
responses are all made from these bytes. Every encoded work carries its provenance (model, checkpoint
step, seed, options, sample index, artjax version): PNG text chunks ("artjax" holds the JSON), JSON
fields. The prompt is left out unless `include_prompt=True`.
"""

import dataclasses
import io
import json
import pathlib

import numpy as np

from artjax.errors import ArtjaxError
from artjax.registry import Registry
from artjax.utils import images

ENCODERS = Registry("output kind")


@dataclasses.dataclass(frozen=True)
class Encoded:
  data: bytes
  media_type: str
  suffix: str


def strict_json(obj, **kwargs) -> str:
  """json.dumps that refuses NaN/Infinity (which are not JSON) instead of writing them."""
  try:
    return json.dumps(obj, allow_nan=False, ensure_ascii=False, **kwargs)
  except ValueError as e:
    raise ArtjaxError(f"cannot write strict JSON: {e}") from None


def provenance(samples, include_prompt: bool = False, **extra) -> dict:
  prov = json.loads(json.dumps(samples.provenance))  # a copy
  if not include_prompt:
    prov["options"].pop("prompt", None)
  return {**prov, **extra}


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
      return [Encoded(_png(grid, provenance(samples, include_prompt), up), "image/png", ".png")]
    if fmt == "png":
      return [Encoded(_png(img, provenance(samples, include_prompt, index=i), upscale or 1), "image/png", ".png")
              for i, img in enumerate(x)]
    raise _unknown(self, fmt)


class TextEncoder:
  """Texts (Completions). Formats: txt (samples separated by a marked line), json ({"samples": [...],
  "finish_reasons": [...], **provenance}, strict UTF-8 JSON with readable CJK)."""

  formats = {"txt": "text/plain; charset=utf-8", "json": "application/json", "text": "text/plain; charset=utf-8"}
  suffixes = {".txt": "txt", ".json": "json"}
  default = "txt"
  item_format = "text"  # each sample alone, UTF-8

  def encode(self, samples, fmt: str, include_prompt: bool = False) -> list[Encoded]:
    texts = [str(t) for t in samples.items]
    if fmt == "txt":
      body = texts[0] if len(texts) == 1 else "\n\n".join(
          f"----- sample {i} -----\n{t}" for i, t in enumerate(texts))
      return [Encoded((body + "\n").encode("utf-8"), self.formats[fmt], ".txt")]
    if fmt == "text":
      return [Encoded(t.encode("utf-8"), self.formats[fmt], ".txt") for t in texts]
    if fmt == "json":
      doc = {**provenance(samples, include_prompt), "samples": texts,
             "finish_reasons": [getattr(t, "finish_reason", None) for t in samples.items]}
      return [Encoded((strict_json(doc, indent=2) + "\n").encode("utf-8"), self.formats[fmt], ".json")]
    raise _unknown(self, fmt)


ENCODERS.register("image")(ImageEncoder())
ENCODERS.register("text")(TextEncoder())


def _png(image: np.ndarray, meta: dict, upscale: int) -> bytes:
  return images.png_bytes(image, upscale, {"artjax": strict_json(meta),  # options may hold CJK
                                           "Software": f"artjax {meta.get('artjax_version', '')}"})


def _unknown(encoder, fmt):
  return ArtjaxError(f"unknown format {fmt!r}; known: {', '.join(encoder.formats)}")


def encoder(kind: str):
  return ENCODERS.get(kind)


def encode(samples, fmt: str | None = None, **kwargs) -> list[Encoded]:
  enc = encoder(samples.kind)
  return enc.encode(samples, fmt or enc.default, **kwargs)


def encode_each(samples, **kwargs) -> list[Encoded]:
  """One encoded work per sample, in the kind's `item_format` (the server's generic /v1/samples)."""
  enc = encoder(samples.kind)
  return enc.encode(samples, enc.item_format, **kwargs)


def default_suffix(kind: str) -> str:
  """The file suffix of `kind`'s default format (what the training loop writes its samples as)."""
  enc = encoder(kind)
  return next(s for s, f in enc.suffixes.items() if f == enc.default)


def write(samples, path, **kwargs) -> pathlib.Path:
  """Writes `samples` to `path`; the suffix picks the format (an ArtjaxError lists the known ones)."""
  path = pathlib.Path(path)
  enc = encoder(samples.kind)
  fmt = enc.suffixes.get(path.suffix)
  if fmt is None:
    raise ArtjaxError(f"cannot write {samples.kind} samples to {str(path)!r}: use a "
                      f"{' or '.join(enc.suffixes)} path")
  [item] = enc.encode(samples, fmt, **kwargs)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(item.data)
  return path
