"""CLI: python -m artjax.train --config configs/X.py[:arg] --workdir DIR [--config.a.b=value ...]"""

from absl import app, flags, logging
from ml_collections import config_flags

from artjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/...py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, samples. Re-use to resume.")
_STOP_AT = flags.DEFINE_integer("stop_at", None, "Stop (and checkpoint) at this step, before total_steps.")
_COORD = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
_PID = flags.DEFINE_integer("process_id", None, "This process's id (multi-process runs).")
_DIST = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with auto-detection "
                          "(SLURM, TPU pods, ...); implied by --coordinator_address.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS['verbosity'].present:  # Orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  import jax

  if _COORD.value or _DIST.value:
    jax.distributed.initialize(coordinator_address=_COORD.value, num_processes=_NPROC.value,
                               process_id=_PID.value)
  from artjax.train.loop import train

  train(errors.checked_config(_CONFIG.value), _WORKDIR.value, stop_at=_STOP_AT.value)


if __name__ == "__main__":
  errors.run(main)
