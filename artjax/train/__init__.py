"""The generic training loop, train state, mesh/sharding and checkpointing. CLI: `python -m artjax.train`."""
