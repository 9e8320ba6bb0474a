"""User-facing errors: raised for bad input and printed by the CLIs as one line."""

import os
import re
import sys
import threading


class ArtjaxError(Exception):
  """A problem the user can fix (bad config, missing data, bad checkpoint); CLIs print it without a traceback."""


def first_line(e: Exception) -> str:
  """The first line of an exception's message (at most 300 characters), or its type's name: what a
  one-line error quotes of a library's (often hundreds of lines long) message."""
  text = str(e).strip()
  return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _fail(msg: str):
  # We are exiting with a clear message: background threads (Orbax's async I/O after a failed
  # restore) dying now must not bury it under their tracebacks. So stderr is pointed at /dev/null
  # first and the message goes straight to the original descriptor; then os._exit skips the
  # interpreter shutdown during which Orbax's closed event loop would print more. Callers have
  # already closed their checkpointers.
  threading.excepthook = lambda args: None
  sys.stdout.flush()
  original = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.write(original, f"error: {msg}\n".encode())
  os._exit(2)


def _underscore_flag(arg: str, defined) -> str:
  """`--max-tokens=5` -> `--max_tokens=5` when that is a defined flag (absl names can't hold dashes)."""
  if not arg.startswith("--") or "-" not in arg[2:].split("=", 1)[0]:
    return arg
  name, sep, value = arg[2:].partition("=")
  fixed = name.replace("-", "_")
  if fixed.startswith("no_") and fixed[3:] in defined:  # --no-cache -> --nocache
    fixed = "no" + fixed[3:]
  base = fixed[2:] if fixed.startswith("no") and fixed[2:] in defined else fixed
  return f"--{fixed}{sep}{value}" if base in defined else arg


def _takes_value(arg: str, defined) -> bool:
  """Whether `arg` is a `--flag` (no `=`) whose value is the next argument."""
  name = arg[2:] if arg.startswith("--") and "=" not in arg else ""
  return name in defined and not defined[name].boolean


def _parse_flags(argv):
  """absl flag parsing where a bad flag or config override is one line, not a traceback."""
  from absl import flags

  fixed = []
  for arg in argv:  # the value of a preceding `--flag VALUE` is left alone, even if it looks like a flag
    fixed.append(arg if fixed and _takes_value(fixed[-1], flags.FLAGS) else _underscore_flag(arg, flags.FLAGS))
  argv = fixed
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if "Failed loading config file" in str(e):  # ml_collections lists every attempt; keep the reason.
      _fail(f"{lines[0].split(':')[0]}: cannot load the config file: {lines[-1]}")
    _fail(" ".join(lines))
  except (KeyError, AttributeError) as e:
    text = str(e.args[0] if e.args else e)
    hint = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)  # ml_collections' suggestion
    if hint:
      _fail(f"unknown config field {hint.group(2)!r} in an override; did you mean {hint.group(1)!r}?")
    _fail(f"unknown config field in an override: {text.splitlines()[0].strip(chr(34) + chr(39))}")
  except (TypeError, ValueError, OSError, ImportError, SyntaxError) as e:
    _fail(f"bad --config or override: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")


def checked_config(config):
  """ml_collections defers a failed config load until first use; surface it as one line now."""
  try:
    config.keys()
  except OSError as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    raise ArtjaxError(f"cannot load the --config file: {lines[-1] if lines else e}") from None
  return config


def run(main):
  """`absl.app.run(main)` where ArtjaxErrors and flag/config errors exit 2 with a one-line message."""
  from absl import app

  def wrapped(argv):
    try:
      return main(argv)
    except ArtjaxError as e:
      _fail(str(e))

  sys.unraisablehook = _without_closed_loop_noise(sys.unraisablehook)
  app.run(wrapped, flags_parser=_parse_flags)


def _without_closed_loop_noise(hook):
  """`hook` (sys.unraisablehook), silent for "Event loop is closed": after a failed Orbax restore,
  tensorstore threads still complete reads into the finished restore's event loop, and each report
  would print a traceback over the one-line error. Nothing is lost: the restore has already failed."""
  def unraisablehook(unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and "Event loop is closed" in str(value):
      return
    hook(unraisable)
  return unraisablehook
