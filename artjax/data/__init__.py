"""Data sources (by name), preprocessing and the deterministic per-process batch loader.

A source is registered in `SOURCES` by name as a callable `(config.data, split) -> source` (grain's
random-access protocol: `__len__`, `__getitem__` giving dicts of numpy arrays). Two optional hooks make a
new kind of data one file in this package, with no edit to the loop:
  factory.prepare(config, stored) -> config   run once before training (and when a checkpoint is
      resumed, with `stored`, the data section saved with it): e.g. build a vocabulary or fill in the
      grid a dataset uses, so it is saved with every checkpoint.
  source.preprocess(example, seed) -> example  per-example work with its own seed (augmentation,
      crops), deterministic in (config.seed, position), so resumed runs see the same batches. Sources
      without it get the image preprocessing of `pipeline.make_preprocess`.
"""

from artjax.data.sources import SOURCES, class_names, make_source  # noqa: F401
from artjax.data.pipeline import Loader, make_preprocess  # noqa: F401
from artjax.registry import import_submodules


def prepare(config, stored=None):
  """`config` with what its data source derives filled in (the source's `prepare` hook; else unchanged).

  `stored`: the data section saved with the checkpoint being resumed (None for a new run).
  """
  hook = getattr(SOURCES.get(config.data.name), "prepare", None)
  return hook(config, stored) if hook else config


# Every file in this package registers its sources on import: a new source needs no edit here.
import_submodules(__name__, __path__)
