"""Content filters for prompts and generated outputs.

A filter is any callable `text -> str | None`: it returns the matched term (or a short reason)
when the text must be refused, else None. That is the hook for other filters (a classifier, a
remote moderation service): wrap it in such a callable and `combine` it with the word list.

`WordListFilter` is deliberately simple and predictable:

- Text and terms are compared after NFKC normalisation and casefold(), so case, fullwidth forms
  ("ＰＯＲＮ") and compatibility characters do not evade it, and invisible format characters
  (zero-width spaces and joiners, soft hyphens) are removed from the text first.
- Terms containing characters of scripts written without spaces between words (CJK, kana,
  Thai, Lao, Khmer, Myanmar, ...) match as substrings anywhere in the text.
- Other terms match whole words only: "ass" matches "an ass." but not "assassin" or "class".
  List inflections separately ("rape", "raped"). Words of a multi-word phrase match across
  any run of whitespace ("kill   yourself"); punctuation inside a term is literal.
- Chinese terms match in both scripts: each is also added in its traditional and simplified form
  (OpenCC), since models and their `script` option may write either.
- It does not undo deliberate obfuscation (letters spaced or dotted apart, leetspeak,
  homoglyphs). That is a classifier's job.
"""

import functools
import importlib.resources
import os
import re
import unicodedata
from collections.abc import Callable, Iterable

from artjax.errors import ArtjaxError

Filter = Callable[[str], str | None]  # text -> the reason to refuse it, or None

# Removed from the text before matching: they are invisible, so "p\u200born" reads as "porn".
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]")

# Scripts written without spaces between words. A term with any of these characters matches as a
# substring, and they do not count as word characters next to other terms, so "porn" is still
# found in "看porn视频" (a plain \b would see no boundary between 看 and p).
_NO_SPACES_RANGES = (
    "\u0e00-\u0eff"          # Thai, Lao
    "\u1000-\u109f"          # Myanmar
    "\u1780-\u17ff"          # Khmer
    "\u2e80-\u2fdf"          # CJK radicals, Kangxi radicals
    "\u3000-\u303f"          # CJK symbols and punctuation
    "\u3040-\u30ff"          # Hiragana, Katakana
    "\u3100-\u312f\u31a0-\u31ff"  # Bopomofo, Katakana extensions
    "\u3400-\u4dbf"          # CJK extension A
    "\u4e00-\u9fff"          # CJK unified ideographs
    "\uf900-\ufaff"          # CJK compatibility ideographs
    "\uff66-\uff9f"          # halfwidth Katakana (NFKC maps these, but terms may carry them)
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
_NO_SPACES = re.compile(f"[{_NO_SPACES_RANGES}]")
_WORD_CHAR = f"[^\\W{_NO_SPACES_RANGES}]"  # a letter, digit or _ of a space-separated script


def _normalize(text: str) -> str:
  return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text)).casefold()


def _script_forms(term: str) -> list[str]:
  """The term, plus its traditional and simplified spellings when it holds CJK characters."""
  if not _NO_SPACES.search(term):
    return [term]
  from artjax.data.text import convert_script

  return list(dict.fromkeys([term, convert_script(term, "traditional"), convert_script(term, "simplified")]))


class WordListFilter:
  """Refuses text containing any of `terms` (see the module docstring for the matching rules).

  `WordListFilter(terms)(text)` returns the matched term as it was given, or None. Blank terms are
  ignored.
  """

  def __init__(self, terms: Iterable[str]):
    self._by_key: dict[str, str] = {}  # normalised term -> term as given (what we report)
    words, substrings = [], []
    for term in terms:
      term = term.strip()
      for form in _script_forms(term):
        key = " ".join(_normalize(form).split())
        if not key or key in self._by_key:
          continue
        self._by_key[key] = term
        (substrings if _NO_SPACES.search(key) else words).append(key)
    # One alternation per kind, longest first so "child porn" is reported rather than "porn".
    self._words = self._substrings = None
    if words:
      alts = "|".join(r"\s+".join(map(re.escape, w.split(" "))) for w in sorted(words, key=len, reverse=True))
      # Not preceded or followed by a word character (Unicode-aware; unlike a plain \b this also
      # works for terms that start or end with punctuation, and CJK next to the term is no word).
      self._words = re.compile(f"(?<!{_WORD_CHAR})(?:{alts})(?!{_WORD_CHAR})")
    if substrings:
      self._substrings = re.compile("|".join(map(re.escape, sorted(substrings, key=len, reverse=True))))

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> "WordListFilter":
    """Loads a UTF-8 file of one term per line; blank lines and lines starting with `#` are skipped.

    Raises ArtjaxError naming the path if it is missing, unreadable or not UTF-8.
    """
    try:
      with open(path, encoding="utf-8") as f:
        text = f.read()
    except FileNotFoundError:
      raise ArtjaxError(f"blocklist file not found: {os.fspath(path)}") from None
    except (OSError, UnicodeDecodeError) as e:
      raise ArtjaxError(f"cannot read the blocklist file {os.fspath(path)}: {e}") from None
    return cls(_parse(text))

  @property
  def terms(self) -> list[str]:
    """The terms, as given (blank and duplicate ones dropped)."""
    return list(dict.fromkeys(self._by_key.values()))  # a term listed once (its other script counts too)

  def __len__(self) -> int:
    return len(self._by_key)

  def __call__(self, text: str) -> str | None:
    """The first listed term found in `text` (the leftmost match; words before substrings), or None."""
    if not text:
      return None
    norm = _normalize(text)
    if self._words is not None and (m := self._words.search(norm)):
      return self._by_key[" ".join(m.group(0).split())]
    if self._substrings is not None and (m := self._substrings.search(norm)):
      return self._by_key[m.group(0)]
    return None

  def __repr__(self) -> str:
    return f"WordListFilter({len(self)} terms)"


def _parse(text: str) -> list[str]:
  lines = (line.strip() for line in text.splitlines())
  return [line for line in lines if line and not line.startswith("#")]


@functools.lru_cache(maxsize=1)
def default_filter() -> WordListFilter:
  """A WordListFilter over the small bundled list `artjax/serve/blocklist.txt` (English and Chinese).

  It is a minimal default; serve with `--blocklist FILE` to use your own list. The filter holds no
  mutable state, so one shared instance is returned.
  """
  text = importlib.resources.files("artjax.serve").joinpath("blocklist.txt").read_text(encoding="utf-8")
  return WordListFilter(_parse(text))


def combine(filters: Iterable[Filter]) -> Filter:
  """One filter that returns the first non-None result of `filters` (in order), or None."""
  filters = tuple(filters)  # later changes to the caller's list do not change this filter

  def combined(text: str) -> str | None:
    for f in filters:
      reason = f(text)
      if reason is not None:
        return reason
    return None

  return combined
