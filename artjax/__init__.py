"""artjax: a JAX research framework for generative art."""

__version__ = "0.1.0"
