"""Reading checkpoints: the config and model item of a run's step, for sampling, evaluation and serving.

Layout (written by `artjax.train.checkpoint.Checkpointer`): WORKDIR/checkpoints/<step>/{model, train,
config}. `model` = params, non-trained collections and EMA params (all that sampling needs); `train` =
step, optimizer state, RNG; `config` = the resolved experiment config (for text: with its vocabulary).
Nothing here imports `artjax.train`: inference and the server read checkpoints through this module only.
"""

import json
import pathlib

import jax
import ml_collections
import orbax.checkpoint as ocp

from artjax.errors import ArtjaxError


def config_to_dict(config) -> dict:
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def checkpoint_dir(workdir) -> pathlib.Path:
  return pathlib.Path(workdir).absolute() / "checkpoints"


def item_handlers() -> dict:
  # Explicit handlers: without them item_metadata() is None and restores fall back to the saved
  # shardings, which fail on a different topology (e.g. sampling on 1 CPU from a multi-host run).
  return {"model": ocp.StandardCheckpointHandler(), "train": ocp.StandardCheckpointHandler(),
          "config": ocp.JsonCheckpointHandler()}


def first_line(e: Exception) -> str:
  text = str(e).strip()
  return (text.splitlines()[0] if text else type(e).__name__)[:300]


class Reader:
  """Read-only access to a workdir's checkpoints (also the base of the trainer's Checkpointer)."""

  def __init__(self, workdir, keep: int = 3, read_only: bool = True):
    self.directory = checkpoint_dir(workdir)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                           enable_async_checkpointing=not read_only)
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=item_handlers())

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self):
    return list(self.manager.all_steps())

  def restore_config(self, step: int | None = None) -> ml_collections.ConfigDict:
    """The config saved with a checkpoint (latest by default)."""
    step = self._check_step(step)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    except Exception as e:
      raise ArtjaxError(f"checkpoint {self.directory / str(step)} has no readable config: {first_line(e)}") from None
    if restored["config"] is None:
      raise ArtjaxError(f"checkpoint {self.directory / str(step)} has no saved config")
    return ml_collections.ConfigDict(restored["config"])

  def restore_model(self, step: int | None = None):
    """(config, model items) of a checkpoint, on the default device, without building the model."""
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
                        f"{first_line(e)}") from None
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

  def close(self):
    self.manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def open_for_reading(workdir) -> Reader:
  """A read-only Reader with clear errors for a missing workdir or checkpoint dir."""
  workdir = pathlib.Path(workdir)
  if not workdir.is_dir():
    raise ArtjaxError(f"workdir {str(workdir)!r} does not exist")
  if not checkpoint_dir(workdir).is_dir():
    raise ArtjaxError(f"workdir {str(workdir)!r} has no checkpoints/ directory (was it trained?)")
  return Reader(workdir)


def restore_model(workdir, step: int | None = None):
  """(config, model items, step) of WORKDIR's checkpoint `step` (default: the latest)."""
  with open_for_reading(workdir) as reader:
    step = reader._check_step(step)
    config, items = reader.restore_model(step)
  return config, items, step


def sampling_params(params, ema_params):
  """The weights to sample with: the EMA when the run keeps one."""
  return params if ema_params is None else ema_params
