"""Generative families, registered by name: each file holds one family's losses, update and sampler."""

from artjax.registry import Registry, import_submodules

METHODS = Registry("method")


def build(config):
  """The method named by `config.method.name`, built from the whole experiment config."""
  return METHODS.get(config.method.name)(config)


# Every file in this package registers itself on import: a new family needs no edit here.
import_submodules(__name__, __path__)
