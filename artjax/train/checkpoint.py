"""Orbax checkpoints: the train state split into items, plus the resolved config so sampling needs nothing else.

Layout: WORKDIR/checkpoints/<step>/{model, train, config}. `model` = params, non-trained collections
and EMA params (all that sampling needs); `train` = step, optimizer state, RNG. Orbax writes each step
into a temporary directory and renames it when complete, so a kill -9 never leaves a checkpoint that
looks complete; the manager ignores the leftovers.
"""

import orbax.checkpoint as ocp

from artjax.checkpoint import Reader, checkpoint_dir, config_to_dict, first_line, open_for_reading  # noqa: F401

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
                        f"config's train state: {first_line(e)}") from None
    return items_to_state(restored)

  def wait(self):
    self.manager.wait_until_finished()
