"""tools/upgrade_transformer_checkpoint.py: a run in the attention layout before issue 13 becomes one that
restores (training and sampling) with exactly the weights it had."""

import importlib.util

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import ROOT, smoke_config
from test_family_contract import _text

from artjax import checkpoint
from artjax.errors import ArtjaxError
from artjax.inference import Sampler
from artjax.train.checkpoint import Checkpointer
from artjax.train.loop import Trainer

spec = importlib.util.spec_from_file_location("upgrade", ROOT / "tools" / "upgrade_transformer_checkpoint.py")
upgrade = importlib.util.module_from_spec(spec)
spec.loader.exec_module(upgrade)


def downgrade(tree):
  """Today's attention arrays in the old layout: qkv (C, 3C), proj (C, C)."""
  def fix(path, x):
    keys = [getattr(k, "key", None) for k in path]
    if x is None or "attn" not in keys or keys[-1] != "kernel":
      return x
    x = np.asarray(x)
    if keys[-2] == "qkv":
      return x.reshape(x.shape[0], -1)
    return x.reshape(-1, x.shape[-1]) if keys[-2] == "proj" else x
  return jax.tree_util.tree_map_with_path(fix, tree, is_leaf=lambda x: x is None)


def rewrite(src_dir, dst_dir, fn):
  src = ocp.CheckpointManager(src_dir, item_handlers=checkpoint.item_handlers(),
                              options=ocp.CheckpointManagerOptions(read_only=True))
  dst = ocp.CheckpointManager(dst_dir, item_handlers=checkpoint.item_handlers(),
                              options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False))
  for step in src.all_steps():
    items = src.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(),
                                                       train=ocp.args.StandardRestore(), config=ocp.args.JsonRestore()))
    dst.save(step, args=ocp.args.Composite(model=ocp.args.StandardSave(fn(items["model"])),
                                           train=ocp.args.StandardSave(fn(items["train"])),
                                           config=ocp.args.JsonSave(items["config"])))
  dst.wait_until_finished()


def test_an_old_layout_run_upgrades_to_the_same_weights(tmp_path):
  config = smoke_config("configs/text/shakespeare_char.py:smoke", **{
      "data.path": str(_text(tmp_path / "corpus.txt", np.random.default_rng(0))), "sample_every": 0, "eval_every": 0})
  trainer = Trainer(config, tmp_path / "new")
  trainer.run(progress=False)
  old = tmp_path / "old"
  rewrite(checkpoint.checkpoint_dir(tmp_path / "new"), checkpoint.checkpoint_dir(old), downgrade)
  _, old_items, _ = checkpoint.restore_model(old)
  assert old_items["params"]["block0"]["attn"]["qkv"]["kernel"].ndim == 2  # really the old layout
  with pytest.raises(Exception):
    Sampler.from_workdir(old).sample(1, seed=0)  # today's model cannot read it

  assert upgrade.main(["--workdir", str(old), "--out", str(tmp_path / "up")]) == 0
  _, want, _ = checkpoint.restore_model(tmp_path / "new")
  _, got, _ = checkpoint.restore_model(tmp_path / "up")
  jax.tree.map(np.testing.assert_array_equal, got, want)
  a = Sampler.from_workdir(tmp_path / "new").sample(1, seed=0).items
  b = Sampler.from_workdir(tmp_path / "up").sample(1, seed=0).items
  assert a == b
  # Training resumes from it: the optimizer moments were reshaped too.
  ckpt = Checkpointer(tmp_path / "up")
  state = ckpt.restore(trainer.abstract_state)
  ckpt.close()
  ref = Checkpointer(tmp_path / "new")
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state), jax.device_get(ref.restore(trainer.abstract_state)))
  ref.close()

  with pytest.raises(ArtjaxError, match="already in the new attention layout"):
    upgrade.upgrade(tmp_path / "new", tmp_path / "again")
  assert upgrade.main(["--workdir", str(old), "--out", str(tmp_path / "up")]) == 2  # never overwrites
