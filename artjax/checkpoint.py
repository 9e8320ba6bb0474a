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
from etils import epath

from artjax.errors import ArtjaxError, first_line  # noqa: F401  (first_line: imported from here too)


def config_to_dict(config) -> dict:
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def is_url(path) -> bool:
  """`gs://bucket/run` and other `scheme://` paths: kept as strings, read through etils.epath / Orbax."""
  return "://" in str(path)


def workdir_path(workdir):
  """A workdir as a path object: pathlib for local paths, etils.epath for `gs://...` (pathlib would
  collapse `gs://b` to `gs:/b`, and `.absolute()` would put the working directory in front)."""
  return epath.Path(str(workdir)) if is_url(workdir) else pathlib.Path(workdir)


def checkpoint_dir(workdir):
  """WORKDIR/checkpoints: absolute for a local workdir, unchanged for a `gs://...` one."""
  if is_url(workdir):
    return epath.Path(str(workdir)) / "checkpoints"
  return pathlib.Path(workdir).absolute() / "checkpoints"


def item_handlers() -> dict:
  # Explicit handlers: without them item_metadata() is None and restores fall back to the saved
  # shardings, which fail on a different topology (e.g. sampling on 1 CPU from a multi-host run).
  return {"model": ocp.StandardCheckpointHandler(), "train": ocp.StandardCheckpointHandler(),
          "config": ocp.JsonCheckpointHandler()}


class Reader:
  """Read-only access to a workdir's checkpoints (also the base of the trainer's Checkpointer).

  Lists only finalized steps: Orbax writes a step into `<step>.orbax-checkpoint-tmp` and renames it
  when complete (on gs://, a `commit_success.txt` marks it), and the writer (Checkpointer) retires old
  steps by renaming them out of the listing before deleting them.
  """

  def __init__(self, workdir, keep: int = 3, read_only: bool = True):
    self.directory = checkpoint_dir(workdir)
    self.manager = ocp.CheckpointManager(self.directory, options=self._options(keep, read_only),
                                         item_handlers=item_handlers())

  def _options(self, keep: int, read_only: bool) -> ocp.CheckpointManagerOptions:
    return ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only, read_only=read_only,
                                        enable_async_checkpointing=not read_only)

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

  def restore_model(self, step: int | None = None, sharding=None):
    """(config, model items) of a checkpoint, without building the model: on the default device, or
    with `sharding(shape) -> jax.sharding.Sharding` each array straight into its place on a mesh (a
    model bigger than one device never lands whole on one)."""
    step = self._check_step(step)
    try:
      model_meta = self.manager.item_metadata(step)["model"]
      if model_meta is None:
        raise ArtjaxError(f"checkpoint {self.directory / str(step)} has no model metadata")
      device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
      place = sharding or (lambda shape: device)
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=place(m.shape)), model_meta)
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
  workdir = workdir_path(workdir)
  try:
    exists = workdir.is_dir()
  except ImportError as e:  # etils.epath needs gcsfs (or TensorFlow) for gs:// paths
    raise ArtjaxError(f"workdir {str(workdir)!r} cannot be read: {first_line(e)}") from None
  if not exists:
    raise ArtjaxError(f"workdir {str(workdir)!r} does not exist")
  if not checkpoint_dir(workdir).is_dir():
    raise ArtjaxError(f"workdir {str(workdir)!r} has no checkpoints/ directory (was it trained?)")
  return Reader(workdir)


def restore_model(workdir, step: int | None = None, sharding=None):
  """(config, model items, step) of WORKDIR's checkpoint `step` (default: the latest); `sharding` as in
  `Reader.restore_model`."""
  with open_for_reading(workdir) as reader:
    step = reader._check_step(step)
    config, items = reader.restore_model(step, sharding)
  return config, items, step


def sampling_params(params, ema_params):
  """The weights to sample with: the EMA when the run keeps one."""
  return params if ema_params is None else ema_params
