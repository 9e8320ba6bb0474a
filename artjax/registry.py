"""Name -> object registries so configs select models, methods and data sources as plain strings."""

import importlib
import pkgutil

from artjax.errors import ArtjaxError


class Registry:
  """A dict of named constructors with a clear error for unknown names."""

  def __init__(self, kind: str):
    self.kind = kind
    self._items = {}

  def register(self, name: str):
    def decorator(obj):
      if name in self._items:
        raise ValueError(f"{self.kind} {name!r} registered twice")
      self._items[name] = obj
      return obj

    return decorator

  def get(self, name: str):
    if name not in self._items:
      raise ArtjaxError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}")
    return self._items[name]

  def names(self):
    return sorted(self._items)

  def __contains__(self, name):
    return name in self._items


def import_submodules(package_name: str, package_path):
  """Imports every module of a package, so a new file registers itself without edits elsewhere."""
  for info in pkgutil.iter_modules(package_path):
    if not info.name.startswith("_"):
      importlib.import_module(f"{package_name}.{info.name}")
