"""Data sources (by name), preprocessing and the deterministic per-process batch loader."""

from artjax.data.sources import SOURCES, class_names, make_source  # noqa: F401
from artjax.data.pipeline import Loader, make_preprocess  # noqa: F401
from artjax.data import text, poetry  # noqa: F401  (registers the text sources)
