"""Evaluation: metrics (FID, IS, precision/recall), feature nets, cached reference statistics; CLI: artjax.evaluate."""
