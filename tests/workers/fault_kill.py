"""`python -m artjax.train` that SIGKILLs itself at a chosen point inside Orbax, for tests/test_faults.py.

  python tests/workers/fault_kill.py --kill_at save:STEP   [artjax.train flags...]
      inside the save of STEP: every byte written to `<STEP>.orbax-checkpoint-tmp`, just before
      Orbax finalizes it (writes commit_success.txt and renames it to `<STEP>`)
  python tests/workers/fault_kill.py --kill_at delete:STEP[:N] [artjax.train flags...]
      while old step STEP is being deleted: from the moment Orbax starts deleting it, at the N-th
      (default 3) file removed under checkpoints/ (Orbax's in-place rmtree, or artjax's purge of
      checkpoints/_deleted/ when Orbax renamed the step there first); if none is removed by the time
      Orbax's delete returns (a rename), right then
  python tests/workers/fault_kill.py --kill_at purge:STEP[:N] [artjax.train flags...]
      as delete, but never right after a rename: at the N-th file removed once Orbax has retired STEP
      (with todelete_subdir: inside artjax's purge of checkpoints/_deleted/ at the next save)
  python tests/workers/fault_kill.py --sigterm_at restore [artjax.train flags...]
      not a kill: SIGTERM to itself as the trainer starts restoring the latest checkpoint
  [--unsafe_delete]: Checkpointer without `todelete_subdir` (Orbax's in-place deletion), to show what
      the option prevents.

The hooks wrap Orbax 0.12 internals (AtomicRenameTemporaryPath.finalize, StandardCheckpointDeleter.
delete); if they move, the worker exits 3 saying so rather than training without a kill.
"""

import asyncio
import functools
import os
import pathlib
import runpy
import signal
import sys
import threading

ROOT = pathlib.Path(__file__).resolve().parents[2]


def die(reason):
  sys.stdout.flush()
  os.write(2, f"fault_kill: SIGKILL {reason}\n".encode())
  os.kill(os.getpid(), signal.SIGKILL)


def hook_save(step: int):
  from orbax.checkpoint._src.path import atomicity

  cls = atomicity.AtomicRenameTemporaryPath
  original = cls.finalize
  if not asyncio.iscoroutinefunction(original):
    sys.exit("fault_kill: AtomicRenameTemporaryPath.finalize is no longer a coroutine function")

  @functools.wraps(original)
  async def finalize(self, *args, **kwargs):
    if self._final_path.name == str(step):
      die(f"before finalizing {self.get()}")
    return await original(self, *args, **kwargs)

  cls.finalize = finalize


def hook_delete(step: int, nth: int, after_rename: bool = True):
  from orbax.checkpoint._src.path import deleter

  armed = threading.Event()
  count = [0]
  unlink, remove = os.unlink, os.remove

  def counting(fn):
    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
      if armed.is_set():
        count[0] += 1
        if count[0] >= nth:
          die(f"at file {count[0]} removed while deleting step {step} ({path})")
      return fn(path, *args, **kwargs)
    return wrapper

  os.unlink, os.remove = counting(unlink), counting(remove)
  cls = deleter.StandardCheckpointDeleter
  original = cls.delete

  @functools.wraps(original)
  def delete(self, s, *args, **kwargs):
    if s != step:
      return original(self, s, *args, **kwargs)
    armed.set()
    result = original(self, s, *args, **kwargs)
    if after_rename and count[0] == 0:
      die(f"right after Orbax retired step {step} without removing a file (renamed)")
    return result

  cls.delete = delete


def hook_sigterm(where: str):
  if where != "restore":
    sys.exit(f"fault_kill: unknown --sigterm_at {where!r}")
  from artjax.train import checkpoint

  original = checkpoint.Checkpointer.restore

  @functools.wraps(original)
  def restore(self, *args, **kwargs):
    os.write(2, b"fault_kill: SIGTERM as the restore starts\n")
    os.kill(os.getpid(), signal.SIGTERM)
    return original(self, *args, **kwargs)

  checkpoint.Checkpointer.restore = restore


def main():
  argv = sys.argv[1:]
  unsafe = "--unsafe_delete" in argv
  argv = [a for a in argv if a != "--unsafe_delete"]
  flag = "--kill_at" if "--kill_at" in argv else "--sigterm_at"
  i = argv.index(flag)
  what, *where = argv[i + 1].split(":")
  del argv[i:i + 2]
  sys.path.insert(0, str(ROOT))
  try:
    if flag == "--sigterm_at":
      hook_sigterm(what)
    elif what == "save":
      hook_save(int(where[0]))
    elif what in ("delete", "purge"):
      hook_delete(int(where[0]), int(where[1]) if len(where) > 1 else 3, after_rename=what == "delete")
    else:
      sys.exit(f"fault_kill: unknown --kill_at {what!r}")
  except (AttributeError, ImportError) as e:  # an Orbax internal moved
    print(f"fault_kill: cannot install the hook: {e}", file=sys.stderr)
    sys.exit(3)
  if unsafe:
    import orbax.checkpoint as ocp

    from artjax.train import checkpoint

    def options(self, keep, read_only):
      return ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)

    checkpoint.Checkpointer._options = options
  sys.argv = ["artjax.train", *argv]
  runpy.run_module("artjax.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
