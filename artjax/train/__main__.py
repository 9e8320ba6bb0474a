"""CLI: python -m artjax.train --config configs/X.py[:arg] --workdir DIR [--config.a.b=value ...]

Multi-process (one process per host, or per GPU): `--distributed` lets JAX detect the cluster (SLURM,
Open MPI, Cloud TPU pods, Kubernetes with `jax[k8s]`); `--coordinator_address --num_processes
--process_id` set it by hand (all three). See docs/cluster.md and launch/.
"""

import os
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from artjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/...py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, samples. Re-use to resume.")
_STOP_AT = flags.DEFINE_integer("stop_at", None, "Stop (and checkpoint) at this step, before total_steps.")
_COORD = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs "
                             "(with --num_processes and --process_id).")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).", lower_bound=1)
_PID = flags.DEFINE_integer("process_id", None, "This process's id, 0..num_processes-1 (multi-process runs).",
                            lower_bound=0)
_DIST = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with auto-detection "
                          "(SLURM, Open MPI, TPU pods, Kubernetes with jax[k8s]); implied by "
                          "--coordinator_address.")
_INIT_TIMEOUT = flags.DEFINE_integer("init_timeout", 300, "Multi-process: seconds to wait for all processes "
                                     "to connect to the coordinator.", lower_bound=1)
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout", 30, "Multi-process: seconds without a heartbeat after "
                                  "which a process counts as dead and the others stop (JAX's default: 100).",
                                  lower_bound=1)
_SHUTDOWN = flags.DEFINE_integer("shutdown_timeout", 60, "Multi-process: seconds an exiting process waits for "
                                 "the others to exit too (JAX's default: 300).", lower_bound=1)
flags.mark_flags_as_required(["config", "workdir"])


def distributed_kwargs(coordinator_address, num_processes, process_id, distributed) -> dict | None:
  """jax.distributed.initialize() keyword arguments from the flags (None: a single-process run).

  Explicit: all of --coordinator_address, --num_processes, --process_id. Auto-detected: --distributed
  alone (JAX reads SLURM / Open MPI / TPU / Kubernetes environment variables).
  """
  explicit = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
              "--process_id": process_id}
  given = [k for k, v in explicit.items() if v is not None]
  if not given:
    return {} if distributed else None
  if len(given) < 3:
    missing = [k for k in explicit if k not in given]
    raise errors.ArtjaxError(f"{', '.join(given)} given without {', '.join(missing)}: pass all three, or only "
                             "--distributed to let JAX detect the cluster (SLURM, Open MPI, TPU, Kubernetes)")
  if ":" not in coordinator_address:
    raise errors.ArtjaxError(f"--coordinator_address {coordinator_address!r} must be host:port")
  if process_id >= num_processes:
    raise errors.ArtjaxError(f"--process_id {process_id} must be below --num_processes {num_processes}")
  return {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}


def initialize_distributed(kwargs: dict, init_timeout: int, heartbeat_timeout: int, shutdown_timeout: int):
  import jax

  import inspect

  timeouts = {"initialization_timeout": init_timeout, "heartbeat_timeout_seconds": heartbeat_timeout,
              "shutdown_timeout_seconds": shutdown_timeout}
  params = inspect.signature(jax.distributed.initialize).parameters  # names of jax 0.10; a later JAX may move them
  if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
    timeouts = {k: v for k, v in timeouts.items() if k in params}
  try:
    jax.distributed.initialize(**kwargs, **timeouts)
  except Exception as e:
    if not kwargs:
      raise errors.ArtjaxError(
          "--distributed: JAX found no cluster to join (it detects SLURM, Open MPI, Cloud TPU pods and, with "
          "jax[k8s], Kubernetes); pass --coordinator_address, --num_processes and --process_id instead "
          f"({type(e).__name__}: {errors.first_line(e)})") from None
    raise errors.ArtjaxError(f"could not join the {kwargs['num_processes']}-process run at "
                             f"{kwargs['coordinator_address']} within --init_timeout={init_timeout}s "
                             f"({type(e).__name__}: {errors.first_line(e)})") from None


def _exit_before_training(signum, frame):
  """SIGTERM before the trainer installs its own handler (importing, joining the cluster, building the
  model and data): no step has been trained since the last checkpoint, so exit 0 right away."""
  sys.stdout.flush()
  os.write(2, b"SIGTERM before training started: nothing to save, exiting\n")
  os._exit(0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  signal.signal(signal.SIGTERM, _exit_before_training)  # the training loop's Preemption replaces it
  if not flags.FLAGS['verbosity'].present:  # Orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  kwargs = distributed_kwargs(_COORD.value, _NPROC.value, _PID.value, _DIST.value)
  if kwargs is not None:
    initialize_distributed(kwargs, _INIT_TIMEOUT.value, _HEARTBEAT.value, _SHUTDOWN.value)
  from artjax.train.loop import train

  config = errors.checked_config(_CONFIG.value)
  if kwargs is None:
    train(config, _WORKDIR.value, stop_at=_STOP_AT.value)
    return
  try:
    train(config, _WORKDIR.value, stop_at=_STOP_AT.value)
  except errors.ArtjaxError:
    raise
  except Exception as e:  # Typically a collective failing because another process died.
    import jax

    raise errors.ArtjaxError(
        f"process {jax.process_index()} of {jax.process_count()} stopped: {type(e).__name__}: "
        f"{errors.first_line(e)} (if another process died, see its log; resume by rerunning the same "
        "command)") from None


if __name__ == "__main__":
  errors.run(main)
