"""The model-as-a-service HTTP server (planned: images, text and music from checkpoints)."""
