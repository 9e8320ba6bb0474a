"""Pure Flax (linen) modules, registered by name; `build(config.model)` makes the module(s) a method needs."""

from artjax.registry import Registry, import_submodules

MODELS = Registry("model")


def build(model_cfg, **derived):
  """Calls the builder registered as `model_cfg.name` with the rest of the section (and `derived`, e.g. a
  vocabulary size the method knows from the data) as keywords."""
  kwargs = {**{k: v for k, v in model_cfg.items() if k != "name"}, **derived}
  return MODELS.get(model_cfg.name)(**kwargs)


# Every file in this package registers itself on import: a new family needs no edit here.
import_submodules(__name__, __path__)
