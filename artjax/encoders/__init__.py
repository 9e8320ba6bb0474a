"""Encoders turn `Samples` into bytes, one registered encoder per output kind (a file in this package each).

Each encoder offers named formats; `encode(samples, fmt)` gives a list of `Encoded` (bytes, media
type, file suffix): one item for a whole-batch format (a PNG grid, an .npy array, a .txt/.json file),
one per sample otherwise (`png`). Files (`write`), the training loop's sample grids and the server's
responses are all made from these bytes. Every encoded work carries its provenance (model, checkpoint
step, seed, options, sample index, artjax version): PNG text chunks ("artjax" holds the JSON), JSON
fields. The prompt is left out unless `include_prompt=True`.
"""

import dataclasses
import json
import pathlib


from artjax.errors import ArtjaxError
from artjax.registry import Registry, import_submodules

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


def unknown_format(encoder, fmt):
  return ArtjaxError(f"unknown format {fmt!r}; known: {', '.join(encoder.formats)}")



def encoder(kind: str):
  return ENCODERS.get(kind)


def encode(samples, fmt: str | None = None, **kwargs) -> list[Encoded]:
  enc = encoder(samples.kind)
  return enc.encode(samples, fmt or enc.default, **kwargs)


def encode_each(samples, fmt: str | None = None, **kwargs) -> list[Encoded]:
  """One encoded work per sample, in `fmt` (default: the kind's `item_format`; what the server returns).

  An encoder whose formats are whole-batch files (music: one MIDI of all samples) takes `each=True`;
  otherwise the kind's per-sample formats (`item_formats`) encode the batch at once, and any other
  format (a grid, an array, a .txt) is made from each sample alone, with its index in the provenance.
  """
  enc = encoder(samples.kind)
  fmt = fmt or enc.item_format
  if fmt not in enc.formats:
    raise unknown_format(enc, fmt)
  if getattr(enc, "per_sample", False):
    return enc.encode(samples, fmt, each=True, **kwargs)
  if fmt in getattr(enc, "item_formats", (enc.item_format,)):
    return enc.encode(samples, fmt, **kwargs)
  return [enc.encode(_one(samples, i), fmt, **kwargs)[0] for i in range(len(samples))]


def _one(samples, i: int):
  """Sample i of `samples` as a Samples of its own (its provenance says which it was)."""
  return dataclasses.replace(samples, items=samples.items[i:i + 1],
                             provenance={**samples.provenance, "index": i}, layout={})


def default_suffix(kind: str) -> str:
  """The file suffix of `kind`'s default format (what the training loop writes its samples as)."""
  enc = encoder(kind)
  return next(s for s, f in enc.suffixes.items() if f == enc.default)


def write(samples, path, **kwargs) -> pathlib.Path:
  """Writes `samples` to `path` (local or gs://...); the suffix picks the format (an ArtjaxError lists the
  known ones)."""
  from artjax.checkpoint import workdir_path

  path = workdir_path(path)
  enc = encoder(samples.kind)
  fmt = enc.suffixes.get(path.suffix)
  if fmt is None:
    raise ArtjaxError(f"cannot write {samples.kind} samples to {str(path)!r}: use a "
                      f"{' or '.join(enc.suffixes)} path")
  [item] = enc.encode(samples, fmt, **kwargs)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(item.data)
  return path


# Every file in this package registers its encoder on import: a new output kind needs no edit here.
import_submodules(__name__, __path__)
