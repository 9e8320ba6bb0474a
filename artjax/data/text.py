"""Text for language models: a char/byte tokenizer, the vocabulary, and the windowed text sources."""

import collections
import functools
import hashlib
import json
import os
import pathlib

import numpy as np

from artjax.data.sources import SOURCES
from artjax.errors import ArtjaxError
from artjax.registry import Registry

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "val")
# Text source name -> `fn(data_cfg) -> list of documents` (the whole corpus, all splits, in order): what
# the vocabulary is built from. A stream corpus is one document; `documents=True` marks corpora whose
# documents are separate, <eos>-framed examples (poems).
CORPORA = Registry("text corpus")


class Tokenizer:
  """Character-level over any Unicode (English + CJK), or byte-level (UTF-8 bytes 0..255).

  Specials follow the base vocabulary (chars, or the 256 bytes). `encode` never produces a special
  from text ("<eos>" in the text is five characters): callers add them as ids.
  """

  def __init__(self, kind: str, chars: str = "", specials: tuple[str, ...] = ()):
    if kind not in ("char", "byte"):
      raise ArtjaxError(f"tokenizer must be 'char' or 'byte', not {kind!r}")
    specials = tuple(specials)
    if len(set(specials)) != len(specials):
      raise ArtjaxError(f"tokenizer specials repeat a name: {specials}")
    self.kind = kind
    self.specials = specials
    if kind == "byte":
      self.chars = ""
      self._base = 256
    else:
      if not chars:
        raise ArtjaxError("a 'char' tokenizer needs its characters (config.data.vocab is empty: "
                          "call artjax.data.text.resolve(config) first)")
      if len(set(chars)) != len(chars):
        dup = [c for c, k in collections.Counter(chars).items() if k > 1]
        raise ArtjaxError(f"tokenizer vocab repeats characters: {''.join(dup)!r}")
      self.chars = chars
      self._base = len(chars)
      # Vectorised lookup: sorted code points and the id each one has.
      cps = np.array([ord(c) for c in chars], np.int64)
      self._order = np.argsort(cps)
      self._sorted_cps = cps[self._order]
    self._special_ids = {name: self._base + i for i, name in enumerate(specials)}

  @property
  def vocab_size(self) -> int:
    return self._base + len(self.specials)

  @property
  def eos_id(self) -> int | None:
    return self._special_ids.get(EOS)

  @property
  def unk_id(self) -> int | None:
    return self._special_ids.get(UNK)

  def special_id(self, name: str) -> int | None:
    return self._special_ids.get(name)

  def encode(self, text: str) -> np.ndarray:
    """int32 ids of `text`; unknown characters become <unk>, or an ArtjaxError if there is none."""
    if self.kind == "byte":
      return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
    cps = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.int64)
    if cps.size == 0:
      return np.zeros((0,), np.int32)
    pos = np.minimum(np.searchsorted(self._sorted_cps, cps), len(self._sorted_cps) - 1)
    known = self._sorted_cps[pos] == cps
    ids = self._order[pos].astype(np.int32)
    if not known.all():
      if self.unk_id is None:
        bad = sorted({chr(c) for c in cps[~known]})
        shown = ", ".join(repr(c) for c in bad[:10]) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        raise ArtjaxError(f"text has character(s) not in the tokenizer's vocabulary and there is no "
                          f"{UNK}: {shown}")
      ids[~known] = self.unk_id
    return ids

  def decode(self, ids, skip_specials: bool = True) -> str:
    """Text of `ids` (any int iterable); byte-level output is decoded as UTF-8 with errors replaced."""
    arr = np.asarray(ids)
    if arr.dtype == object:  # a generator or other plain iterable
      arr = np.asarray(list(ids))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
      raise ArtjaxError(f"decode needs integer token ids, got dtype {arr.dtype}")
    ids = arr.reshape(-1).astype(np.int64) if arr.size else np.zeros((0,), np.int64)
    bad = ids[(ids < 0) | (ids >= self.vocab_size)]
    if bad.size:
      raise ArtjaxError(f"token id {int(bad[0])} is outside the vocabulary (size {self.vocab_size})")
    if self.kind == "byte":
      out, run = [], bytearray()
      for i in ids.tolist():
        if i < 256:
          run.append(i)
          continue
        if not skip_specials:
          out.append(run.decode("utf-8", errors="replace") + self.specials[i - 256])
          run = bytearray()
      out.append(run.decode("utf-8", errors="replace"))
      return "".join(out)
    strings = self.token_strings()
    return "".join(strings[i] for i in ids.tolist() if not (skip_specials and i >= self._base))

  def token_strings(self) -> list[str]:
    """One string per id: the character, the byte as a latin-1 character, or the special's name."""
    base = [chr(b) for b in range(256)] if self.kind == "byte" else list(self.chars)
    return base + list(self.specials)

  @classmethod
  def from_config(cls, data_cfg) -> "Tokenizer":
    """From `data_cfg.tokenizer` ('char' | 'byte'), `data_cfg.vocab` and `data_cfg.specials`."""
    return cls(data_cfg.get("tokenizer", "char"), data_cfg.get("vocab", "") or "",
               tuple(data_cfg.get("specials", ()) or ()))

  def __repr__(self):
    return f"Tokenizer({self.kind!r}, vocab_size={self.vocab_size}, specials={self.specials})"


# ---------------------------------------------------------------------------------------------------
# Corpora


def is_text(data_cfg) -> bool:
  """Whether `data_cfg.name` is one of the text sources."""
  return data_cfg.get("name", None) in CORPORA


def is_documents(data_cfg) -> bool:
  """Whether the corpus is separate <eos>-framed documents (poems), not one stream."""
  return getattr(CORPORA.get(data_cfg.name), "documents", False)


def _check_split(data_cfg, split: str):
  if split not in SPLITS:
    raise ArtjaxError(f"text source {data_cfg.name!r} has splits {', '.join(map(repr, SPLITS))}, "
                      f"not {split!r}")


def _val_fraction(data_cfg) -> float:
  vf = float(data_cfg.get("val_fraction", 0.1))
  if not 0.0 <= vf < 1.0:
    raise ArtjaxError(f"config.data.val_fraction must be in [0, 1), not {vf}")
  return vf


@functools.lru_cache(maxsize=4)
def _opencc(config: str):
  import opencc

  return opencc.OpenCC(config)


def convert_script(text: str, script: str) -> str:
  """`text` unchanged (script ''), or converted to 'simplified' / 'traditional' Chinese with OpenCC."""
  if not script:
    return text
  if script not in ("simplified", "traditional"):
    raise ArtjaxError(f"script must be '', 'simplified' or 'traditional', not {script!r}")
  return _opencc("t2s" if script == "simplified" else "s2t").convert(text)


def _text_files(data_cfg) -> list[pathlib.Path]:
  path = data_cfg.get("path", "")
  if not path:
    raise ArtjaxError("data source 'text' needs config.data.path: a .txt file or a directory of them")
  p = pathlib.Path(os.path.expanduser(path))
  if p.is_file():
    return [p]
  if not p.is_dir():
    raise ArtjaxError(f"config.data.path {str(p)!r} does not exist (expected a .txt file or a directory)")
  files = sorted((f for f in p.rglob("*.txt") if f.is_file()), key=lambda f: f.relative_to(p).as_posix())
  if not files:
    raise ArtjaxError(f"config.data.path {str(p)!r} holds no *.txt files")
  return files


def _read_text(path: pathlib.Path) -> str:
  try:
    return path.read_text(encoding="utf-8")
  except (OSError, UnicodeDecodeError) as e:
    raise ArtjaxError(f"cannot read text file {str(path)!r} as UTF-8: {e}") from None


def _tfds_texts(data_cfg, tfds_split: str) -> list[str]:
  """The `text_key` feature of every example of one TFDS split (array_record, never downloads)."""
  import tensorflow_datasets as tfds

  name = data_cfg.get("tfds_name", "") or "tiny_shakespeare"
  data_dir = data_cfg.get("tfds_data_dir", "") or None
  key = data_cfg.get("text_key", "text")
  where = data_dir or "the default TFDS data dir"
  try:
    ds = tfds.data_source(name, split=tfds_split, data_dir=data_dir, download=False)
  except Exception as e:  # TFDS raises many types; one line is enough to act on.
    first = next((l.strip() for l in str(e).splitlines() if l.strip()), type(e).__name__)
    raise ArtjaxError(f"cannot read TFDS dataset {name!r} split {tfds_split!r} from {where} (prepare it "
                      f"with `tfds build {name} --file_format=array_record --data_dir=DIR`): {first}") from None
  texts = []
  for i in range(len(ds)):
    ex = ds[i]
    if key not in ex:
      raise ArtjaxError(f"TFDS dataset {name!r} has no feature {key!r} (has {', '.join(ex)}); "
                        f"set config.data.text_key")
    v = ex[key]
    v = v.item() if isinstance(v, np.ndarray) else v
    texts.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
  return texts


def _tfds_stream(data_cfg) -> str:
  """The TFDS splits `data_cfg.tfds_splits` (default train, validation, test) joined in order.

  For tiny_shakespeare that is input.txt exactly, so the 90/10 split below is nanoGPT's (TFDS's own
  validation split is only the 5% after train).
  """
  splits = list(data_cfg.get("tfds_splits", None) or ["train", "validation", "test"])
  return "".join(t for s in splits for t in _tfds_texts(data_cfg, s))


def _poem_files(data_cfg) -> list[pathlib.Path]:
  d = data_cfg.get("dir", "")
  if not d:
    raise ArtjaxError("data source 'chinese_poetry' needs config.data.dir: the chinese-poetry checkout")
  root = pathlib.Path(os.path.expanduser(d))
  if not root.is_dir():
    raise ArtjaxError(f"config.data.dir {str(root)!r} does not exist or is not a directory "
                      f"(expected the chinese-poetry JSON files)")
  patterns = data_cfg.get("files", None) or ["**/*.json"]
  patterns = [patterns] if isinstance(patterns, str) else list(patterns)
  try:
    files = {f for pat in patterns for f in root.glob(pat) if f.is_file() and f.suffix == ".json"}
  except (ValueError, NotImplementedError) as e:  # e.g. an absolute pattern
    raise ArtjaxError(f"bad config.data.files pattern in {patterns} (relative to data.dir): {e}") from None
  if not files:
    raise ArtjaxError(f"no JSON files match {patterns} under config.data.dir {str(root)!r}")
  return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def _poems_in_file(path: pathlib.Path) -> list[str]:
  try:
    items = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ArtjaxError(f"cannot read poems from {str(path)!r}: {e}") from None
  if not isinstance(items, list):
    raise ArtjaxError(f"{str(path)!r} is not a JSON array of poems")
  poems = []
  for item in items:
    lines = (item.get("paragraphs") or item.get("content")) if isinstance(item, dict) else None
    if isinstance(lines, list):
      poems.append("".join(str(l).strip() for l in lines))
  return poems


def _load_poems(data_cfg) -> list[str]:
  files = _poem_files(data_cfg)
  script = data_cfg.get("script", "")
  max_chars = int(data_cfg.get("max_chars", 0) or 0)
  poems = {}  # dict keeps first-seen order: duplicates (same text after conversion) kept once
  for f in files:
    for p in _poems_in_file(f):
      p = convert_script(p, script)
      if p and (max_chars <= 0 or len(p) <= max_chars):
        poems.setdefault(p, None)
  if not poems:
    raise ArtjaxError(f"no poems (JSON objects with 'paragraphs' or 'content'"
                      f"{f' of at most {max_chars} characters' if max_chars > 0 else ''}) in "
                      f"{len(files)} JSON file(s) under {data_cfg.dir!r}")
  return list(poems)


def load_documents(data_cfg) -> list[str]:
  """The whole corpus in a deterministic order: one stream (text files, TFDS splits joined) or the poems."""
  if not is_text(data_cfg):
    raise ArtjaxError(f"{data_cfg.get('name', None)!r} is not a text source ({', '.join(CORPORA.names())})")
  return CORPORA.get(data_cfg.name)(data_cfg)


def build_vocab(data_cfg) -> tuple[str, tuple]:
  """(chars, specials) over the whole corpus: sorted characters seen >= `min_count` times."""
  min_count = int(data_cfg.get("min_count", 1))
  counts = collections.Counter()
  for doc in load_documents(data_cfg):
    counts.update(doc)
  chars = "".join(sorted(c for c, k in counts.items() if k >= min_count))
  if not chars:
    raise ArtjaxError(f"no character of the {data_cfg.name!r} corpus occurs min_count={min_count} times")
  specials = (EOS,) if is_documents(data_cfg) else ()
  if len(chars) < len(counts):
    specials += (UNK,)
  return chars, specials


def resolve(config, stored=None):
  """A copy of `config` with `data.vocab` / `data.specials` filled for text sources (no-op otherwise).

  Runs once before training, so the vocabulary is saved (with the config) in every checkpoint.
  `stored`: the data section saved with a checkpoint being resumed. Its vocabulary is kept (the
  checkpoint's token ids mean its characters), and a corpus with characters outside it is an
  ArtjaxError, unless the vocabulary has <unk> (then they map to it).
  """
  data_cfg = config.data
  if not is_text(data_cfg):
    return config
  if stored is not None and (stored.get("vocab", "") or stored.get("specials", None)):
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.data.vocab = stored.get("vocab", "")
      old = config.data.get("specials", None)
      stored_specials = stored.get("specials", ()) or ()
      config.data.specials = list(stored_specials) if isinstance(old, list) else tuple(stored_specials)
    tok = Tokenizer.from_config(config.data)
    if tok.kind == "char" and tok.unk_id is None:
      seen = set()
      for doc in load_documents(config.data):
        seen.update(doc)
      missing = sorted(seen - set(tok.token_strings()))
      if missing:
        shown = "".join(missing[:20]) + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else "")
        raise ArtjaxError(f"the corpus has {len(missing)} character(s) not in the vocabulary stored with the "
                          f"checkpoint being resumed ({shown!r}); restore the corpus it was trained on, or "
                          f"train in a new workdir")
    return config
  if data_cfg.get("vocab", ""):
    return config
  if data_cfg.get("tokenizer", "char") == "byte":
    # Bytes need no corpus pass: only the framing token of document corpora.
    chars, specials = "", ((EOS,) if is_documents(data_cfg) else ())
  else:
    chars, specials = build_vocab(data_cfg)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.vocab = chars
    old = config.data.get("specials", None)
    config.data.specials = list(specials) if isinstance(old, list) else tuple(specials)
  return config


# ---------------------------------------------------------------------------------------------------
# Sources


def _seq_len(data_cfg) -> int:
  seq_len = int(data_cfg.get("seq_len", 0) or 0)
  if seq_len <= 0:
    raise ArtjaxError(f"config.data.seq_len must be a positive context length, not {seq_len}")
  return seq_len


def _index(i, n: int) -> int:
  i = int(i)
  if i < 0:
    i += n
  if not 0 <= i < n:
    raise IndexError(f"index {i} out of range for {n} examples")
  return i


class WindowSource:
  """Windows of `seq_len + 1` tokens over one stream.

  Train: every offset (the Loader shuffles them: nanoGPT's random offsets). Val: non-overlapping
  windows, stride `seq_len`, so one pass scores every target exactly once; the last is padded, mask 0.
  """

  def __init__(self, tokens: np.ndarray, seq_len: int, split: str, pad_id: int = 0, what: str = "text"):
    self.tokens = np.asarray(tokens, np.int32)
    self.seq_len = seq_len
    self.split = split
    self.pad_id = pad_id
    n = len(self.tokens)
    need = seq_len + 1 if split == "train" else 2
    if n < need:
      raise ArtjaxError(f"the {split} split of {what} has {n} tokens, too few for one window of "
                        f"seq_len={seq_len} (needs {need})")
    self._len = n - seq_len if split == "train" else -(-(n - 1) // seq_len)

  def __len__(self):
    return self._len

  def __getitem__(self, i):
    i = _index(i, self._len)
    start = i if self.split == "train" else i * self.seq_len
    window = self.tokens[start:start + self.seq_len + 1]
    tokens = np.full((self.seq_len + 1,), self.pad_id, np.int32)
    tokens[:len(window)] = window
    mask = np.zeros((self.seq_len,), np.float32)
    mask[:len(window) - 1] = 1.0
    return {"tokens": tokens, "mask": mask}

  def __repr__(self):
    return f"WindowSource({self.split}, tokens={len(self.tokens)}, seq_len={self.seq_len}, n={len(self)})"


def _split_stream(text: str, data_cfg, split: str) -> str:
  n_train = int(len(text) * (1.0 - _val_fraction(data_cfg)))
  return text[:n_train] if split == "train" else text[n_train:]


def _stream_source(text: str, data_cfg, split: str, what: str) -> WindowSource:
  tok = Tokenizer.from_config(data_cfg)
  tokens = tok.encode(_split_stream(text, data_cfg, split))
  pad = tok.eos_id if tok.eos_id is not None else 0
  return WindowSource(tokens, _seq_len(data_cfg), split, pad, what)


@CORPORA.register("text")
def _text_corpus(data_cfg) -> list[str]:
  return ["".join(_read_text(f) for f in _text_files(data_cfg))]


@SOURCES.register("text")
def text_source(data_cfg, split: str) -> WindowSource:
  """A .txt file or every *.txt under a directory (sorted, concatenated): the first 1 - val_fraction
  of the characters is 'train', the rest 'val'."""
  _check_split(data_cfg, split)
  return _stream_source(_text_corpus(data_cfg)[0], data_cfg, split, repr(data_cfg.path))


text_source.prepare = resolve


@CORPORA.register("tfds_text")
def _tfds_corpus(data_cfg) -> list[str]:
  return [_tfds_stream(data_cfg)]


@SOURCES.register("tfds_text")
def tfds_text_source(data_cfg, split: str) -> WindowSource:
  """A prepared TFDS text dataset (default tiny_shakespeare): its splits joined into one stream, then
  cut like `text` (first 1 - val_fraction 'train', the rest 'val')."""
  _check_split(data_cfg, split)
  name = data_cfg.get("tfds_name", "") or "tiny_shakespeare"
  return _stream_source(_tfds_stream(data_cfg), data_cfg, split, f"TFDS {name!r}")


tfds_text_source.prepare = resolve


def poem_in_val(poem: str, val_fraction: float) -> bool:
  """Split by content hash: a poem stays in its split when files are added or reordered."""
  return int(hashlib.md5(poem.encode("utf-8")).hexdigest(), 16) % 1000 < 1000 * val_fraction


class DocumentSource:
  """One document per example: [eos] + doc + [eos], cut to `seq_len + 1`, padded with eos (mask 0)."""

  def __init__(self, docs: list[str], tokenizer: Tokenizer, seq_len: int, name: str = "documents"):
    if tokenizer.eos_id is None:
      raise ArtjaxError(f"{name} needs an {EOS} special in config.data.specials (call resolve(config))")
    self.docs = docs
    self.tokenizer = tokenizer
    self.seq_len = seq_len
    self.name = name

  def __len__(self):
    return len(self.docs)

  def __getitem__(self, i):
    doc = self.docs[_index(i, len(self.docs))]
    eos = self.tokenizer.eos_id
    ids = np.concatenate([[eos], self.tokenizer.encode(doc), [eos]])[:self.seq_len + 1]
    tokens = np.full((self.seq_len + 1,), eos, np.int32)
    tokens[:len(ids)] = ids
    mask = np.zeros((self.seq_len,), np.float32)
    mask[:len(ids) - 1] = 1.0
    return {"tokens": tokens, "mask": mask}

  def __repr__(self):
    return f"DocumentSource({self.name}, n={len(self)}, seq_len={self.seq_len})"


CORPORA.register("chinese_poetry")(_load_poems)
_load_poems.documents = True


@SOURCES.register("chinese_poetry")
def chinese_poetry_source(data_cfg, split: str) -> DocumentSource:
  """Poems of the chinese-poetry JSON files under `data_cfg.dir`, one per example, split by hash."""
  _check_split(data_cfg, split)
  vf = _val_fraction(data_cfg)
  docs = [p for p in _load_poems(data_cfg) if poem_in_val(p, vf) == (split == "val")]
  if not docs:
    raise ArtjaxError(f"the {split} split of chinese_poetry under {data_cfg.dir!r} is empty "
                      f"(val_fraction={vf})")
  return DocumentSource(docs, Tokenizer.from_config(data_cfg), _seq_len(data_cfg),
                        f"chinese_poetry {split}")


chinese_poetry_source.prepare = resolve
