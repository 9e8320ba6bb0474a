"""Exact metrics over a whole data split (e.g. validation loss and bits per character of a language model).

A method that supports it defines `eval_sums(params, model_state, batch) -> dict of scalars` (sums over
the batch's rows, honouring batch['valid']) and `eval_summary(sums) -> metrics`. Batches run in order
without shuffling; the last one is padded with rows marked valid = 0, so every example counts once.
"""

import jax
import numpy as np
from tqdm.auto import tqdm

from artjax import data
from artjax.errors import ArtjaxError


def supports(method) -> bool:
  return hasattr(method, "eval_sums")


def evaluate_split(method, params, model_state, data_cfg, split: str, batch_size: int, *, max_batches: int = 0,
                   sharding=None, progress: bool = False, source=None, fn=None) -> dict:
  """Metrics of `method` over `split` of `data_cfg` (the first `max_batches` batches if > 0).

  `fn`: a jitted `method.eval_sums` to reuse across calls (the trainer evaluates repeatedly).
  """
  if not supports(method):
    raise ArtjaxError(f"the {type(method).__name__} method has no split evaluation (eval_sums)")
  source = source if source is not None else data.make_source(data_cfg, split)
  loader = data.Loader(source, data.make_preprocess(data_cfg, source), batch_size, seed=0, shuffle=False)
  n = len(source)
  num_batches = -(-n // batch_size)
  if max_batches:
    num_batches = min(num_batches, max_batches)
  fn = fn or jax.jit(method.eval_sums)
  total = None
  for k in tqdm(range(num_batches), disable=not progress, desc=f"eval {split}", mininterval=1.0):
    batch = loader.batch(k)
    batch["valid"] = (loader.global_positions(k) < n).astype(np.float32)
    if sharding is not None:
      batch = data.pipeline.to_global(batch, sharding, batch_size)
    sums = fn(params, model_state, batch)
    total = sums if total is None else jax.tree.map(lambda a, b: a + b, total, sums)
  return method.eval_summary(jax.device_get(total))

