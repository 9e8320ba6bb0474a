"""Small helpers shared by training, sampling and evaluation."""
