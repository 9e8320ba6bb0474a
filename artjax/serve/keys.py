"""API keys for the server: a JSON file of SHA-256 hashes, and the `python -m artjax.serve keys` CLI.

File format (only hashes are stored; a key is shown once, when it is created):

  {"keys": [{"name": "alice", "sha256": "<64 hex digits>", "created": "2025-01-31T12:00:00Z"}]}

Keys are `"ajx-" + secrets.token_urlsafe(32)` (256 random bits). Plain SHA-256 is the usual
choice for hashing high-entropy random tokens (GitHub does the same): a slow password hash
(bcrypt, scrypt) only helps against guessing low-entropy secrets, and 256 random bits cannot
be guessed.
"""

from __future__ import annotations  # the `list` method below would shadow `list[...]` annotations

import argparse
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import tempfile
import threading

from artjax.errors import ArtjaxError

KEY_PREFIX = "ajx-"
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _digest(key: str) -> bytes:
  # surrogatepass: a client can send any str; hashing must not raise on lone surrogates.
  return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _check_name(name: str) -> None:
  if not isinstance(name, str) or not _NAME.fullmatch(name):
    raise ArtjaxError(f"bad key name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ @ -")


class KeyStore:
  """The API keys in one JSON file.

  `KeyStore(path)` loads `path`; a missing file is an empty store (it is created on the first
  `add`), a malformed one raises ArtjaxError naming the path. `add` and `revoke` re-read the file
  first, so a long-running store never overwrites changes another process made, then save it
  atomically with mode 0600. `verify` is safe to call from many threads, also during `reload`.
  """

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    self._lock = threading.Lock()  # serialises add/revoke/reload; verify reads a snapshot
    # An immutable tuple of (name, digest bytes, created) that is replaced, never mutated, so
    # `verify` needs no lock.
    self._entries: tuple[tuple[str, bytes, str], ...] = ()
    self.reload()

  def reload(self) -> None:
    """Re-reads the file (missing = empty). Raises ArtjaxError if it is malformed."""
    with self._lock:
      self._entries = self._read()

  def _read(self) -> tuple[tuple[str, bytes, str], ...]:
    try:
      with open(self.path, encoding="utf-8") as f:
        data = json.load(f)
    except FileNotFoundError:
      return ()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ArtjaxError(f"cannot read the API key file {self.path}: {e}") from None
    bad = ArtjaxError(f"malformed API key file {self.path}: expected "
                      '{"keys": [{"name": ..., "sha256": <64 hex digits>, "created": ...}]}')
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
      raise bad
    entries, names = [], set()
    for item in data["keys"]:
      if not isinstance(item, dict):
        raise bad
      name, digest, created = item.get("name"), item.get("sha256"), item.get("created", "")
      if (not isinstance(name, str) or not _NAME.fullmatch(name) or not isinstance(digest, str)
          or not _HEX64.fullmatch(digest.lower()) or not isinstance(created, str)):
        raise bad
      if name in names:
        raise ArtjaxError(f"malformed API key file {self.path}: the name {name!r} appears twice")
      names.add(name)
      entries.append((name, bytes.fromhex(digest), created))
    return tuple(entries)

  def _save(self, entries) -> None:
    """Writes `entries` atomically: a 0600 temp file in the same directory, then os.replace."""
    data = {"keys": [{"name": n, "sha256": d.hex(), "created": c} for n, d, c in entries]}
    parent = os.path.dirname(os.path.abspath(self.path))
    try:
      os.makedirs(parent, exist_ok=True)
      # mkstemp creates the file 0600 already, so the hashes are never readable by others,
      # not even for a moment; same directory so os.replace is an atomic rename.
      fd, tmp = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(self.path) + ".",
                                 suffix=".tmp")
    except OSError as e:
      raise ArtjaxError(f"cannot write the API key file {self.path}: {e}") from None
    try:
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
      os.chmod(tmp, 0o600)
      os.replace(tmp, self.path)
    except OSError as e:
      try:
        os.unlink(tmp)
      except OSError:
        pass
      raise ArtjaxError(f"cannot write the API key file {self.path}: {e}") from None

  def add(self, name: str) -> str:
    """Creates, stores (as its SHA-256) and returns a new key for `name`.

    Raises ArtjaxError for a bad name (1-64 of A-Z a-z 0-9 . _ @ -) or one already in use.
    """
    _check_name(name)
    with self._lock:
      entries = self._read()
      if any(n == name for n, _, _ in entries):
        raise ArtjaxError(f"a key named {name!r} already exists in {self.path}; revoke it first")
      key = KEY_PREFIX + secrets.token_urlsafe(32)
      created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
      entries = entries + ((name, _digest(key), created),)
      self._save(entries)
      self._entries = entries
    return key

  def revoke(self, name: str) -> None:
    """Removes the key called `name`. Raises ArtjaxError (listing the known names) if there is none."""
    with self._lock:
      entries = self._read()
      kept = tuple(e for e in entries if e[0] != name)
      if len(kept) == len(entries):
        known = ", ".join(n for n, _, _ in entries) or "(none)"
        raise ArtjaxError(f"no key named {name!r} in {self.path}; known: {known}")
      self._save(kept)
      self._entries = kept

  def list(self) -> list[dict]:
    """`[{"name", "created"}]` in creation order; never the hashes."""
    return [{"name": n, "created": c} for n, _, c in self._entries]

  def verify(self, key: str) -> str | None:
    """The name of the presented key, or None if it is not a stored key.

    Constant-time in the key: its SHA-256 is compared with every stored hash via
    `hmac.compare_digest`, with no early exit, so timing reveals neither which key matched nor
    how much of a hash did.
    """
    if not isinstance(key, str):
      return None
    digest = _digest(key)
    found = None
    for name, stored, _ in self._entries:  # a snapshot: reload swaps the tuple, never edits it
      if hmac.compare_digest(stored, digest) and found is None:
        found = name
    return found

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f"KeyStore({self.path!r}, {len(self)} keys)"


def main(argv: list[str]) -> int:
  """`python -m artjax.serve keys {add,list,revoke} ...`; returns the exit status (2 on errors)."""
  parser = argparse.ArgumentParser(
      prog="python -m artjax.serve keys",
      description="Manage the server's API keys. The file stores only SHA-256 hashes; a new key "
                  "is printed once.")
  sub = parser.add_subparsers(dest="command", required=True, metavar="{add,list,revoke}")
  for cmd, help_ in (("add", "create a key and print it (last line of stdout)"),
                     ("list", "list key names and creation times"),
                     ("revoke", "delete a key")):
    p = sub.add_parser(cmd, help=help_, description=help_)
    if cmd != "list":
      p.add_argument("name", metavar="NAME", help="who the key is for (1-64 of A-Z a-z 0-9 . _ @ -)")
    p.add_argument("--keys", required=True, metavar="FILE", help="the API key file (JSON)")
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:  # --help or a usage error: argparse has printed it; hand back the status
    return e.code if isinstance(e.code, int) else 2
  try:
    store = KeyStore(args.keys)
    if args.command == "add":
      key = store.add(args.name)
      print(f"created key {args.name!r} in {args.keys}; it is shown once, store it now:")
      print(key)
    elif args.command == "list":
      if not len(store):
        print(f"no keys in {args.keys}", file=sys.stderr)
      for entry in store.list():
        print(f"{entry['name']}\t{entry['created']}")
    else:
      store.revoke(args.name)
      print(f"revoked key {args.name!r} in {args.keys}")
  except ArtjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0
