"""Command-line flags for the families' sampling options, generated from their typed declarations.

`artjax.sample` and `artjax.evaluate` share these: one flag per option any registered family declares
(`Method.OPTIONS`), with its help text; values are checked by the model's own declarations when
used, so `--temperature nan` or `--top-p 2` is a one-line error naming the option.
"""

import pathlib
import re

from artjax import options as opts
from artjax.errors import ArtjaxError

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
  """The shell escapes \\n, \\t, \\r and \\\\ decoded (so --stop "\\n\\n" means two newlines); every other
  character, backslashes before anything else included (C:\\Users), is kept as given."""
  return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)


def declared_options(kind: str | None = None) -> dict:
  """name -> Option over every registered family (of output `kind`, if given); one name, one kind."""
  from artjax import methods

  families = [methods.METHODS.get(name) for name in methods.METHODS.names()]
  return opts.union(f.OPTIONS for f in families if kind is None or f.output_kind == kind)


def define_option_flags():
  """Defines --NAME flags for every declared sampling option; returns `() -> dict` of those given."""
  from absl import flags

  definers = {"int": flags.DEFINE_integer, "float": flags.DEFINE_float, "str": flags.DEFINE_string,
              "bool": flags.DEFINE_bool, "strings": flags.DEFINE_multi_string, "bytes": flags.DEFINE_string}
  declared = declared_options()
  defined = {}
  for name, option in declared.items():
    kind = "str" if option.kind == "str" and option.choices and not option.strict else option.kind
    defined[name] = definers[kind](name, None, option.help + (" (a file path)" if kind == "bytes" else ""))

  def given():
    values = {name: flag.value for name, flag in defined.items() if flag.value is not None}
    for name, value in values.items():  # text flags (--prompt, --stop) read shell escapes alike
      if declared[name].kind == "str":
        values[name] = unescape(value)
      elif declared[name].kind == "strings":
        values[name] = [unescape(v) for v in value]
      elif declared[name].kind == "bytes":
        values[name] = _read_file(name, value)
    return values

  return given


def _read_file(name: str, path: str) -> bytes:
  try:
    return pathlib.Path(path).expanduser().read_bytes()
  except OSError as e:
    raise ArtjaxError(f"--{name}: cannot read {path!r}: {e.strerror or e}") from None
