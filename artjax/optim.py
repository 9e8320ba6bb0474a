"""Optimizers and learning-rate schedules built from a config section."""

import jax
import optax

from artjax.errors import ArtjaxError


def make_schedule(cfg, total_steps: int):
  """`cfg.schedule`: 'constant' | 'cosine' | 'warmup_cosine' (to `cfg.get('end_lr', 0)`)."""
  kind = cfg.get("schedule", "constant")
  lr = cfg.lr
  warmup = cfg.get("warmup_steps", 0)
  if kind == "constant":
    if warmup:
      return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
    return lr
  if kind in ("cosine", "warmup_cosine"):
    return optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 0), max(total_steps, warmup + 1), end_value=cfg.get("end_lr", 0.0))
  raise ArtjaxError(f"unknown optimizer.schedule {kind!r}; known: constant, cosine, warmup_cosine")


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """Adam/AdamW/SGD with optional global-norm clipping, from e.g. `config.optimizer`."""
  lr = make_schedule(cfg, total_steps)
  name = cfg.get("name", "adam")
  if name == "adam":
    tx = optax.adam(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8))
  elif name == "adamw":
    decay_on = cfg.get("weight_decay_on", "all")  # 'matrices': not biases/norm scales (GPT-2, nanoGPT)
    if decay_on not in ("all", "matrices"):
      raise ArtjaxError(f"unknown optimizer.weight_decay_on {decay_on!r}; known: all, matrices")
    mask = (lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)) if decay_on == "matrices" else None
    tx = optax.adamw(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8),
                     weight_decay=cfg.get("weight_decay", 1e-4), mask=mask)
  elif name == "sgd":
    tx = optax.sgd(lr, momentum=cfg.get("momentum", None))
  else:
    raise ArtjaxError(f"unknown optimizer.name {name!r}; known: adam, adamw, sgd")
  clip = cfg.get("grad_clip_norm", 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), tx) if clip else tx
