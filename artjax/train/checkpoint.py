"""Orbax checkpoints: the train state split into items, plus the resolved config so sampling needs nothing else.

Layout: WORKDIR/checkpoints/<step>/{model, train, config}. `model` = params, non-trained collections
and EMA params (all that sampling needs); `train` = step, optimizer state, RNG. Orbax writes each step
into a temporary directory and renames it when complete, so a kill -9 never leaves a checkpoint that
looks complete; the manager ignores the leftovers and (`cleanup_tmp_directories`) removes them when the
next run opens the workdir.

Old steps (beyond `keep`) are retired the same way: Orbax 0.12 deletes a step in place (rmtree, or
file-by-file in parallel threads), and a kill -9 in the middle would leave a half-deleted `<step>/`
that is still listed. With `todelete_subdir` Orbax renames it to `checkpoints/_deleted/<step>` first
(one atomic rename on a local or NFS file system) and process 0 empties `_deleted/` before each save
(in a background thread, off the training step) and on close. On gs:// Orbax ignores `todelete_subdir` and deletes in place; a step interrupted there
is the oldest one, never the one a resume or sampling picks by default.
"""

import shutil
import threading

import jax
import orbax.checkpoint as ocp

from artjax.checkpoint import (Reader, checkpoint_dir, config_to_dict, first_line, is_url,  # noqa: F401
                               open_for_reading)

from artjax.errors import ArtjaxError
from artjax.train.state import TrainState


def state_to_items(state: TrainState) -> dict:
  """Splits a state into the `model` item (all that sampling needs) and the `train` item."""
  return {"model": {"params": state.params, "model_state": state.model_state, "ema_params": state.ema_params},
          "train": {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}}


def items_to_state(items: dict) -> TrainState:
  model, train = items["model"], items["train"]
  return TrainState(step=train["step"], params=model["params"], model_state=model["model_state"],
                    opt_state=train["opt_state"], ema_params=model["ema_params"], rng=train["rng"])


class Checkpointer(Reader):
  """Saves/restores TrainStates every `save_every` steps (and when forced), keeping the last `keep`."""

  def __init__(self, workdir, keep: int = 3, read_only: bool = False):
    super().__init__(workdir, keep=keep, read_only=read_only)
    self._purger = None
    self._purge_deleted()  # what a killed run had retired but not yet removed

  def _options(self, keep: int, read_only: bool) -> ocp.CheckpointManagerOptions:
    if read_only:
      return super()._options(keep, read_only)
    return ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True,
                                        cleanup_tmp_directories=True, todelete_subdir=TODELETE)

  def _purge_deleted(self):
    """Removes retired steps (process 0; local file systems: on gs:// Orbax deletes in place)."""
    if jax.process_index() != 0 or is_url(self.directory):
      return
    retired = self.directory / TODELETE
    if retired.is_dir():
      for path in list(retired.iterdir()):
        shutil.rmtree(path, ignore_errors=True)

  def _purge_in_background(self):
    if self._purger is None or not self._purger.is_alive():
      self._purger = threading.Thread(target=self._purge_deleted, name="artjax-purge-deleted", daemon=True)
      self._purger.start()

  def _finish_purge(self):
    if self._purger is not None:
      self._purger.join()
    self._purge_deleted()

  def save(self, step: int, state: TrainState, config):
    self._purge_in_background()
    items = state_to_items(state)
    self.manager.save(step, args=ocp.args.Composite(
        model=ocp.args.StandardSave(items["model"]), train=ocp.args.StandardSave(items["train"]),
        config=ocp.args.JsonSave(config_to_dict(config))), force=True)

  def restore(self, abstract_state: TrainState, step: int | None = None) -> TrainState:
    """Restores into the shapes, dtypes and shardings of `abstract_state` (from jax.eval_shape)."""
    step = self._check_step(step)
    target = state_to_items(abstract_state)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          model=ocp.args.StandardRestore(target["model"]), train=ocp.args.StandardRestore(target["train"])))
    except Exception as e:
      raise ArtjaxError(f"checkpoint {self.directory / str(step)} cannot be restored into this "
                        f"config's train state: {first_line(e)}") from None
    return items_to_state(restored)

  def wait(self):
    self.manager.wait_until_finished()
    self._finish_purge()

  def close(self):
    super().close()  # waits for a save in flight (and the deletions that follow it)
    self._finish_purge()


TODELETE = "_deleted"  # checkpoints/_deleted/<step>: retired steps, out of the listing
