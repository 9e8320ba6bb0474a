"""Generative families, registered by name: each file holds one family's losses, update and sampler."""

from artjax.registry import Registry

METHODS = Registry("method")


def build(config):
  """The method named by `config.method.name`, built from the whole experiment config."""
  return METHODS.get(config.method.name)(config)


# Importing a method file registers it.
from artjax.methods import gan  # noqa: E402,F401
