"""Orbax checkpoints: the train state split into items, plus the resolved config so sampling needs nothing else.

Layout: WORKDIR/checkpoints/<step>/{model, train, config}. `model` = params, non-trained collections
and EMA params (all that sampling needs); `train` = step, optimizer state, RNG. Orbax writes each step
into a temporary directory and renames it when complete, so a kill -9 never leaves a checkpoint that
looks complete; the manager ignores the leftovers.
"""

import json
import pathlib

import jax
import ml_collections
import orbax.checkpoint as ocp

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


def config_to_dict(config) -> dict:
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def checkpoint_dir(workdir) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / "checkpoints"


class Checkpointer:
  """Saves/restores TrainStates every `save_every` steps (and when forced), keeping the last `keep`."""

  def __init__(self, workdir, keep: int = 3, read_only: bool = False):
    self.directory = checkpoint_dir(workdir)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                           enable_async_checkpointing=not read_only)
    # Explicit handlers: without them item_metadata() is None and restores fall back to the saved
    # shardings, which fail on a different topology (e.g. sampling on 1 CPU from a multi-host run).
    handlers = {"model": ocp.StandardCheckpointHandler(), "train": ocp.StandardCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def save(self, step: int, state: TrainState, config):
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
                        f"config's train state: {_first_line(e)}") from None
    return items_to_state(restored)

  def restore_model(self, step: int | None = None):
    """(config dict, model items) of a checkpoint, on the default device, without building the model."""
    step = self._check_step(step)
    try:
      model_meta = self.manager.item_metadata(step)["model"]
      if model_meta is None:
        raise ArtjaxError(f"checkpoint {self.directory / str(step)} has no model metadata")
      device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), model_meta)
      restored = self.manager.restore(step, args=ocp.args.Composite(
          model=ocp.args.StandardRestore(target), config=ocp.args.JsonRestore()))
    except ArtjaxError:
      raise
    except Exception as e:
      raise ArtjaxError(f"checkpoint {self.directory / str(step)} is corrupt or incomplete: "
                        f"{_first_line(e)}") from None
    if restored["config"] is None:
      raise ArtjaxError(f"checkpoint {self.directory / str(step)} has no saved config")
    return ml_collections.ConfigDict(restored["config"]), restored["model"]

  def _check_step(self, step):
    steps = self.all_steps()
    if not steps:
      raise ArtjaxError(f"no checkpoints in {self.directory} (expected numbered step directories)")
    if step is None:
      return max(steps)
    if step not in steps:
      raise ArtjaxError(f"no checkpoint for step {step} in {self.directory}; available: "
                        f"{', '.join(map(str, sorted(steps)))}")
    return step

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def open_for_reading(workdir) -> Checkpointer:
  """A read-only Checkpointer with clear errors for a missing workdir or checkpoint dir."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise ArtjaxError(f"workdir {str(workdir)!r} does not exist")
  if not checkpoint_dir(workdir).is_dir():
    raise ArtjaxError(f"workdir {str(workdir)!r} has no checkpoints/ directory (was it trained?)")
  return Checkpointer(workdir, read_only=True)


def _first_line(e: Exception) -> str:
  text = str(e).strip()
  return (text.splitlines()[0] if text else type(e).__name__)[:300]
