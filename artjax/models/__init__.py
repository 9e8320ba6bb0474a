"""Pure Flax (linen) modules, registered by name; `build(config.model)` makes the module(s) a method needs."""

from artjax.registry import Registry

MODELS = Registry("model")


def build(model_cfg):
  """Calls the builder registered as `model_cfg.name` with the rest of the section as keywords."""
  kwargs = {k: v for k, v in model_cfg.items() if k != "name"}
  return MODELS.get(model_cfg.name)(**kwargs)


# Importing a model file registers it.
from artjax.models import dcgan  # noqa: E402,F401
