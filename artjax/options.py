"""Typed sampling options, declared once per family and checked the same way everywhere.

A method lists the options it may take as `Option`s (`Method.OPTIONS`); the CLI flags of
`artjax.sample`/`artjax.evaluate`, the HTTP request fields of `artjax.serve`, the playground's form
and the checks of config defaults (`method.temperature`, ...) are all derived from these
declarations, so a value is refused with the same message wherever it comes from.
"""

import base64
import binascii
import dataclasses
import math
from typing import Any

from artjax.errors import ArtjaxError

KINDS = ("int", "float", "str", "bool", "strings", "bytes")
INT_RANGE = (-2 ** 31, 2 ** 31 - 1)   # options become int32 on the device
FLOAT_MAX = 3.4028234663852886e38    # float32's largest finite value
SEED_RANGE = (0, 2 ** 32 - 1)        # jax.random.key takes a uint32 seed (larger ints wrap)


class OptionError(ArtjaxError):
  """A sampling option's value is invalid; `param` names the option (the HTTP error's `param`)."""

  def __init__(self, param: str, message: str):
    super().__init__(message)
    self.param = param


@dataclasses.dataclass(frozen=True)
class Option:
  """One sampling option.

  kind: 'int' | 'float' (finite) | 'str' | 'bool' | 'strings' (one string or a list of strings; a
  plain string is one item, as OpenAI's `stop`) | 'bytes' (a file: the CLI flag takes its path, HTTP
  a base64 string; e.g. a MIDI primer). minimum/maximum bound numbers (inclusive unless
  exclusive_minimum), and lengths of str (characters) and bytes (bytes); choices restrict str values (aliases are the method's own
  business: it may accept more spellings than `choices` shows, so `choices` is only checked if
  `strict`). `default` is what the method uses when the option is not given (None: "the config's").
  For a server: `limit` names the setting (artjax.serve Settings field, e.g. 'max_steps') that bounds
  the option's effective value, and `cost` marks the option whose effective value counts against a
  key's units per minute (tokens, frames): a new family declares these, the server is not edited.
  """

  name: str
  kind: str
  help: str
  default: Any = None
  minimum: float | None = None
  maximum: float | None = None
  exclusive_minimum: bool = False
  choices: tuple | None = None
  strict: bool = True
  max_items: int | None = None
  max_length: int | None = None
  limit: str | None = None
  cost: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"option {self.name}: unknown kind {self.kind!r}; known: {', '.join(KINDS)}")

  def check(self, value):
    """`value` converted to this option's Python type; OptionError naming the option otherwise.

    None passes through (the method's default applies).
    """
    if value is None:
      return None
    fail = lambda why: OptionError(self.name, f"sampling option {self.name}: {why}, got {value!r}")  # noqa: E731
    if self.kind == "bool":
      if not isinstance(value, bool):
        raise fail("must be true or false")
      return value
    if self.kind == "int":
      if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
          value = int(value)
        else:
          raise fail("must be an integer")
      if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise fail(f"must fit in 32 bits ({INT_RANGE[0]}..{INT_RANGE[1]})")
      self._check_range(int(value), fail)
      return int(value)
    if self.kind == "float":
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail("must be a number")
      if not math.isfinite(value) or abs(value) > FLOAT_MAX:
        raise fail("must be a finite number (float32)")
      self._check_range(float(value), fail)
      return float(value)
    if self.kind == "str":
      if not isinstance(value, str):
        raise fail("must be a string")
      _check_utf8(self.name, value)
      if self.max_length is not None and len(value) > self.max_length:
        raise OptionError(self.name, f"sampling option {self.name}: at most {self.max_length} characters, "
                          f"got {len(value)}")
      if self.choices is not None and self.strict and value not in self.choices:
        raise fail(f"must be one of {', '.join(map(str, self.choices))}")
      return value
    if self.kind == "bytes":
      if isinstance(value, str):
        try:
          value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
          raise OptionError(self.name, f"sampling option {self.name}: must be base64-encoded bytes "
                            f"(a file's content)") from None
      if not isinstance(value, (bytes, bytearray)):
        raise OptionError(self.name, f"sampling option {self.name}: must be bytes (base64 in JSON)")
      if self.max_length is not None and len(value) > self.max_length:
        raise OptionError(self.name, f"sampling option {self.name}: at most {self.max_length} bytes, "
                          f"got {len(value)}")
      if not value:
        raise OptionError(self.name, f"sampling option {self.name}: is empty")
      return bytes(value)
    # strings
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) for s in items):
      raise fail("must be a string or a list of strings")
    for s in items:
      _check_utf8(self.name, s)
    if self.max_items is not None and len(items) > self.max_items:
      raise OptionError(self.name, f"sampling option {self.name}: at most {self.max_items} items, got {len(items)}")
    if self.max_length is not None and any(len(s) > self.max_length for s in items):
      raise OptionError(self.name, f"sampling option {self.name}: each item at most {self.max_length} characters")
    return tuple(items)

  def _check_range(self, x, fail):
    lo, hi = self.minimum, self.maximum
    if lo is not None and (x <= lo if self.exclusive_minimum else x < lo):
      raise fail(f"must be {'>' if self.exclusive_minimum else '>='} {lo:g}")
    if hi is not None and x > hi:
      raise fail(f"must be <= {hi:g}")

  def describe(self) -> dict:
    """JSON-ready description (the model listing and the playground form are built from it)."""
    d = {"name": self.name, "type": self.kind, "help": self.help, "default": self.default}
    for k in ("minimum", "maximum", "choices", "max_items", "max_length"):
      v = getattr(self, k)
      if v is not None:
        d[k] = list(v) if isinstance(v, tuple) else v
    if self.exclusive_minimum:
      d["exclusive_minimum"] = True
    return d


def _check_utf8(name, text):
  try:
    text.encode("utf-8")
  except UnicodeEncodeError as e:
    raise OptionError(name, f"sampling option {name}: not valid Unicode text ({e.reason} at "
                      f"position {e.start})") from None


def check_seed(seed, name: str = "seed") -> int:
  """A sampling seed as an int in SEED_RANGE (OptionError otherwise)."""
  if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
    raise OptionError(name, f"{name}: must be an integer in {SEED_RANGE[0]}..{SEED_RANGE[1]}, got {seed!r}")
  return int(seed)


def check(declared, options: dict, owner: str = "this model") -> dict:
  """`options` checked against the declared `Option`s (an iterable); unknown names are an OptionError.

  Returns the converted values, without the ones that are None.
  """
  by_name = {o.name: o for o in declared}
  unknown = sorted(set(options) - set(by_name))
  if unknown:
    known = ", ".join(by_name) or "none"
    raise OptionError(unknown[0], f"{owner} has no sampling option(s) {', '.join(unknown)}; it takes: {known}")
  out = {}
  for name, value in options.items():
    value = by_name[name].check(value)
    if value is not None:
      out[name] = value
  return out


def union(option_lists) -> dict:
  """name -> Option over several families' declarations; one name must mean one kind everywhere."""
  merged = {}
  for opts in option_lists:
    for o in opts:
      prev = merged.get(o.name)
      if prev is not None and prev.kind != o.kind:
        raise ValueError(f"sampling option {o.name!r} is declared as {prev.kind} and as {o.kind}")
      merged.setdefault(o.name, o)
  return merged


# Options several families share, declared once so they mean the same thing everywhere.
LABEL = Option("label", "int", "Class to generate (class-conditional models), e.g. 8 for eights; "
               "default: classes in turn.", minimum=0)
