"""artjax.serve: an OpenAI-compatible HTTP API over artjax checkpoints (`python -m artjax.serve`).

app.py (routes, errors, auth), batching.py (request coalescing), keys.py, limits.py,
content_filter.py, metrics.py, static/playground.html. It sees models only through
`artjax.inference.Sampler` and `artjax.encoders`.
"""
