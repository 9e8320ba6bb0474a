"""Loading `configs/*.py[:arg]` files from Python (tools, tests), as `--config` does on the command line."""

import importlib.util
import pathlib

from artjax.errors import ArtjaxError


def load_config(spec: str, overrides: dict | None = None):
  """`'configs/gan/mnist_dcgan.py:smoke'` -> the locked ConfigDict, with dotted-key `overrides` applied."""
  path, _, arg = spec.partition(":")
  path = pathlib.Path(path)
  if not path.is_file():
    raise ArtjaxError(f"config file {str(path)!r} not found")
  module_spec = importlib.util.spec_from_file_location(f"artjax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.lock()
  for key, value in (overrides or {}).items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise ArtjaxError(f"unknown config field {key!r}")
    node[leaf] = value
  return config


def with_absolute_data_paths(config):
  """A copy whose data directories are absolute: the config saved with a run must not depend on the
  working directory of the process that trained it (sampling/evaluation run from anywhere)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for key in ("dir", "path", "tfds_data_dir"):
      value = config.data.get(key, "")
      if value and "://" not in value:  # gs://... is already absolute; pathlib would mangle it
        config.data[key] = str(pathlib.Path(value).expanduser().absolute())
  config.lock()
  return config
