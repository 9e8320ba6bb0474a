"""Evaluation metrics (FID, IS, precision/recall, likelihoods); the image families add them."""
