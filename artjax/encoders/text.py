"""Texts: one .txt for all samples, one text per sample, or JSON with provenance and finish reasons."""

from artjax.encoders import ENCODERS, Encoded, provenance, strict_json, unknown_format


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
    raise unknown_format(self, fmt)


ENCODERS.register("text")(TextEncoder())
