r"""Rewrites a Transformer run's checkpoints from the attention layout before issue 13 into today's.

  python tools/upgrade_transformer_checkpoint.py --workdir runs/old --out runs/old_upgraded

Until issue 13 the Transformer's attention had `qkv` kernel (C, 3C) (+ bias (3C,)) and `proj` kernel
(C, C); now they are (C, 3, heads, head_dim) (+ (3, heads, head_dim)) and (heads, head_dim, C), so that
one head's q, k and v sit on one tensor-parallel shard. The old arrays reshape into the new ones exactly
(the old forward pass reshaped (B, T, 3C) to (B, T, 3 * heads, head_dim) and split q, k, v in that
order), so the upgraded run samples the same outputs and resumes training where it stopped: every step
of WORKDIR is rewritten into OUT with its parameters, EMA parameters and optimizer moments reshaped and
its config unchanged. WORKDIR is only read. Checkpoints already in the new layout are refused.
"""

import argparse
import pathlib
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from artjax import errors
from artjax.checkpoint import checkpoint_dir, item_handlers


def upgrade_tree(tree, num_heads: int):
  """Returns (tree with old-layout attention arrays reshaped, number of arrays reshaped)."""
  count = 0

  def fix(path, x):
    nonlocal count
    keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    if len(keys) < 2 or x is None or keys[-2] not in ("qkv", "proj") or "attn" not in keys:
      return x
    x = np.asarray(x)
    if keys[-2] == "qkv" and keys[-1] == "kernel" and x.ndim == 2:
      c = x.shape[0]
      count += 1
      return x.reshape(c, 3, num_heads, c // num_heads)
    if keys[-2] == "qkv" and keys[-1] == "bias" and x.ndim == 1:
      count += 1
      return x.reshape(3, num_heads, x.shape[0] // (3 * num_heads))
    if keys[-2] == "proj" and keys[-1] == "kernel" and x.ndim == 2:
      c = x.shape[1]
      count += 1
      return x.reshape(num_heads, c // num_heads, c)
    return x

  return jax.tree_util.tree_map_with_path(fix, tree, is_leaf=lambda x: x is None), count


def upgrade(workdir, out) -> list[int]:
  """Rewrites every step of `workdir` into `out`; returns the steps. Raises ArtjaxError on a bad input."""
  src = ocp.CheckpointManager(checkpoint_dir(workdir), item_handlers=item_handlers(),
                              options=ocp.CheckpointManagerOptions(read_only=True))
  steps = sorted(src.all_steps())
  if not steps:
    raise errors.ArtjaxError(f"no checkpoints in {checkpoint_dir(workdir)}")
  if checkpoint_dir(out).exists() and any(checkpoint_dir(out).iterdir()):
    raise errors.ArtjaxError(f"{checkpoint_dir(out)} already holds checkpoints; give an empty --out")
  dst = ocp.CheckpointManager(checkpoint_dir(out), item_handlers=item_handlers(),
                              options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False))
  for step in steps:
    items = src.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(),
                                                       train=ocp.args.StandardRestore(),
                                                       config=ocp.args.JsonRestore()))
    config = items["config"]
    if config["model"].get("name") != "transformer":
      raise errors.ArtjaxError(f"step {step} of {workdir} is a {config['model'].get('name')!r} run, not a transformer")
    heads = int(config["model"].get("num_heads", 4))
    model, n_model = upgrade_tree(items["model"], heads)
    train, _ = upgrade_tree(items["train"], heads)
    if not n_model:
      raise errors.ArtjaxError(f"step {step} of {workdir} is already in the new attention layout")
    dst.save(step, args=ocp.args.Composite(model=ocp.args.StandardSave(model), train=ocp.args.StandardSave(train),
                                           config=ocp.args.JsonSave(config)))
  dst.wait_until_finished()
  dst.close()
  src.close()
  return steps


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="the run with old-layout checkpoints (read only)")
  p.add_argument("--out", required=True, help="a new workdir for the upgraded checkpoints")
  args = p.parse_args(argv)
  try:
    steps = upgrade(args.workdir, pathlib.Path(args.out))
  except errors.ArtjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"upgraded steps {', '.join(map(str, steps))} into {checkpoint_dir(args.out)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
