"""Faults: kill -9 at random and at fixed points inside Orbax, SIGTERM (1 and 2 processes, and during
start-up), a 2-process resume against a 1-process one, and a process dying in a 2-process run.

Every run is the real CLI (`python -m artjax.train`, or tests/workers/fault_kill.py around it) in its own
process group, killed with its group if the test fails. Child processes share a persistent JAX
compilation cache (the session's from tests/conftest.py, else one for this module), so only the first
compiles each program. Time-outs scale with ARTJAX_TEST_TIMEOUT_SCALE (default 1) for slow machines.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from artjax.checkpoint import open_for_reading, restore_model
from conftest import ROOT

SCALE = float(os.environ.get("ARTJAX_TEST_TIMEOUT_SCALE", "1"))
FAULT_WORKER = str(ROOT / "tests" / "workers" / "fault_kill.py")
T = 30  # total_steps of the single-process fault runs
CONFIG = ["--config", "configs/gan/digits_dcgan.py:smoke", f"--config.total_steps={T}", "--config.log_every=1",
          "--config.sample_every=0", "--config.checkpoint_every=1", "--config.keep_checkpoints=2"]


def timeout(seconds: float) -> float:
  return seconds * SCALE


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
  """The session's persistent compilation cache (tests/conftest.py) if there is one, else this module's
  own; None with ARTJAX_TEST_JAX_CACHE=0."""
  if os.environ.get("ARTJAX_TEST_JAX_CACHE", "1") == "0":
    return None
  return os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(tmp_path_factory.mktemp("jax_cache"))


class Runs:
  """Starts CLI runs in their own process groups (output in files) and kills what is left at exit."""

  def __init__(self, tmp_path, cache):
    self.logs = tmp_path / "logs"
    self.logs.mkdir(exist_ok=True)
    self.cache = cache
    self.procs = []

  def start(self, name, args, devices=1, worker=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    if self.cache:
      env.update(JAX_COMPILATION_CACHE_DIR=str(self.cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cmd = [sys.executable, worker] if worker else [sys.executable, "-m", "artjax.train"]
    out, err = open(self.logs / f"{name}.out", "w"), open(self.logs / f"{name}.err", "w")
    p = subprocess.Popen([*cmd, *args], cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    out.close()
    err.close()
    p.name = name
    self.procs.append(p)
    return p

  def output(self, p) -> tuple[str, str]:
    return (self.logs / f"{p.name}.out").read_text(), (self.logs / f"{p.name}.err").read_text()

  def wait(self, p, seconds, rc=0) -> tuple[str, str]:
    """Waits for `p`; asserts its exit status (None: any). Returns (stdout, stderr)."""
    try:
      p.wait(timeout=timeout(seconds))
    except subprocess.TimeoutExpired:
      self.kill(p)
      out, err = self.output(p)
      raise AssertionError(f"{p.name} still running after {timeout(seconds):.0f}s:\n{out[-1500:]}\n{err[-3000:]}")
    out, err = self.output(p)
    if rc is not None:
      assert p.returncode == rc, f"{p.name} exited {p.returncode}, expected {rc}:\n{out[-1500:]}\n{err[-3000:]}"
    return out, err

  def run(self, name, args, seconds=120, rc=0, **kwargs):
    return self.wait(self.start(name, args, **kwargs), seconds, rc)

  def kill(self, p, sig=signal.SIGKILL):
    try:
      os.killpg(p.pid, sig)
    except ProcessLookupError:
      pass
    if sig == signal.SIGKILL:
      p.wait()

  def close(self):
    for p in self.procs:
      if p.poll() is None:
        self.kill(p)


@pytest.fixture
def runs(tmp_path, jax_cache):
  r = Runs(tmp_path, jax_cache)
  yield r
  r.close()


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def logged_steps(workdir) -> int:
  f = workdir / "metrics.jsonl"
  return sum(1 for line in open(f) if '"d_loss"' in line) if f.exists() else 0


def wait_until(predicate, seconds, procs=(), what="condition"):
  """Polls `predicate`; fails early if one of `procs` exits first."""
  deadline = time.time() + timeout(seconds)
  while not predicate():
    for p in procs:
      if p.poll() is not None:
        raise AssertionError(f"{p.name} exited {p.returncode} while waiting for {what}")
    if time.time() > deadline:
      raise AssertionError(f"timed out after {timeout(seconds):.0f}s waiting for {what}")
    time.sleep(0.05)


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def restore_everything(workdir, step=None):
  """(step, {"model": ..., "train": ...}) of a checkpoint, read through artjax.checkpoint's Reader
  (the sampling side's manager) onto one device, with targets from the saved metadata."""
  with open_for_reading(workdir) as reader:
    step = reader._check_step(step)
    meta = reader.manager.item_metadata(step)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = lambda m: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), m)  # noqa: E731
    items = reader.manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore(target(meta["model"])), train=ocp.args.StandardRestore(target(meta["train"]))))
  return step, host({"model": items["model"], "train": items["train"]})


def listed_steps(workdir):
  if not (workdir / "checkpoints").is_dir():
    return []
  with open_for_reading(workdir) as reader:
    return reader.all_steps()


def assert_all_listed_steps_restore(workdir):
  """Every listed step restores completely, through both readers: the sampling one (model + config,
  `artjax.checkpoint.restore_model`) and all items (model + train: what a resume reads)."""
  steps = listed_steps(workdir)
  assert steps, f"no checkpoint listed in {workdir}"
  for step in steps:
    config, items, got = restore_model(workdir, step)
    assert got == step and config.total_steps == T and items["params"]
    _, everything = restore_everything(workdir, step)
    assert int(everything["train"]["step"]) == step
  return steps


def assert_trees_equal(a, b):
  flat_a, tree_a = jax.tree.flatten(a)
  flat_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, jax_cache):
  """An uninterrupted run to T, keeping every 6th step: the faulted runs must end bit-for-bit equal."""
  r = Runs(tmp_path_factory.mktemp("reference"), jax_cache)
  workdir = r.logs.parent / "run"
  try:
    r.run("reference", [*CONFIG, "--workdir", str(workdir), "--config.checkpoint_every=6",
                        "--config.keep_checkpoints=10"], seconds=180)
  finally:
    r.close()
  assert listed_steps(workdir) == [6, 12, 18, 24, 30]
  return workdir


@pytest.mark.slow
def test_kill_9_loop_resumes_bit_for_bit(reference, runs, tmp_path):
  """4 SIGKILLs at seeded random moments of one run, each followed by the same command again: no
  restart fails to restore, every listed step restores, and the end equals the uninterrupted run."""
  rng = np.random.default_rng(0)
  workdir = tmp_path / "run"
  args = [*CONFIG, "--workdir", str(workdir)]
  kills = []
  for i in range(4):
    before = logged_steps(workdir)
    resumes = bool(listed_steps(workdir))
    p = runs.start(f"kill{i}", args)
    progress = int(rng.integers(1, 4))  # new steps logged by this launch before the kill window
    wait_until(lambda: logged_steps(workdir) >= before + progress, 120, [p], f"launch {i} to train")
    time.sleep(float(rng.uniform(0, 0.3)))
    runs.kill(p)
    out, err = runs.output(p)
    assert p.returncode == -signal.SIGKILL, (out[-1500:], err[-3000:])
    assert ("resumed from" in out) == resumes, f"launch {i}:\n{out[-1500:]}\n{err[-3000:]}"
    # A kill before the first save is finalised leaves nothing listed: the next launch starts afresh.
    kills.append(max(assert_all_listed_steps_restore(workdir)) if listed_steps(workdir) else 0)
  assert kills[-1] < T, f"the run finished before the last kill: {kills}"
  out, _ = runs.run("final", args)
  assert "resumed from" in out and f"done at step {T}" in out
  assert listed_steps(workdir) == [T - 1, T]
  assert_trees_equal(restore_everything(workdir, T)[1], restore_everything(reference, T)[1])


@pytest.mark.slow
def test_kills_inside_orbax_save_and_delete(reference, runs, tmp_path):
  """SIGKILL at fixed points: inside a save before it is finalised, while Orbax retires an old step,
  and while the retired step is being removed; then SIGTERM as a restore starts. After each, every
  listed step restores (sampling reader and full restore) and the next run resumes; the run ends
  bit-for-bit equal to the uninterrupted one, and `python -m artjax.sample` reads it."""
  workdir = tmp_path / "run"
  args = [*CONFIG, "--workdir", str(workdir), "--stop_at=12"]
  ckpts = workdir / "checkpoints"

  _, err = runs.run("save", ["--kill_at", "save:3", *args], rc=-signal.SIGKILL, worker=FAULT_WORKER)
  assert "fault_kill: SIGKILL before finalizing" in err
  assert [p.name for p in ckpts.glob("3.orbax-checkpoint-tmp*")], "the unfinished save must be on disk"
  assert assert_all_listed_steps_restore(workdir) == [1, 2]

  out, err = runs.run("delete", ["--kill_at", "delete:4", *args], rc=-signal.SIGKILL, worker=FAULT_WORKER)
  assert "resumed from" in out and "fault_kill: SIGKILL" in err and "deleting step 4" not in err, err[-2000:]
  assert not list(ckpts.glob("*.orbax-checkpoint-tmp*")), "the next run removes an unfinished save"
  assert assert_all_listed_steps_restore(workdir) == [5, 6]  # step 4: renamed away whole, not half-deleted

  out, err = runs.run("purge", ["--kill_at", "purge:6", *args], rc=-signal.SIGKILL, worker=FAULT_WORKER)
  assert "resumed from" in out and "while deleting step 6" in err, err[-2000:]
  # Usually [7, 8]; one or two saves later if the (background) purge ran before Orbax had retired step 6.
  steps = assert_all_listed_steps_restore(workdir)
  assert len(steps) == 2 and steps[1] == steps[0] + 1 and 8 <= steps[1] <= 10, steps

  out, err = runs.run("sigterm", ["--sigterm_at", "restore", *args], worker=FAULT_WORKER)
  assert f"SIGTERM: saving step {steps[-1]}" in out, out[-1500:]
  assert assert_all_listed_steps_restore(workdir) == steps

  out, _ = runs.run("final", args)
  assert "resumed from" in out and "done at step 12" in out
  assert not list((ckpts / "_deleted").iterdir()), "retired steps are removed"
  assert_trees_equal(restore_everything(workdir, 12)[1], restore_everything(reference, 12)[1])
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  p = subprocess.run([sys.executable, "-m", "artjax.sample", "--workdir", str(workdir), "--num", "4", "--out",
                      str(tmp_path / "s.npy")], cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=timeout(120))
  assert p.returncode == 0, p.stderr[-3000:]
  assert np.load(tmp_path / "s.npy").shape[0] == 4


def two_processes(runs, name, args, seconds=180):
  coord = f"127.0.0.1:{free_port()}"
  return [runs.start(f"{name}{i}", [*args, "--coordinator_address", coord, "--num_processes", "2",
                                    "--process_id", str(i)]) for i in range(2)]


@pytest.mark.slow
def test_two_processes_sigterm_resume_and_a_dying_process(runs, tmp_path):
  """2 processes (1 device each), the real CLI, three faults in a row:

  1. SIGTERM to process 1 only: the processes agree at the next multiple of 10; both join the save of
     that step and exit 0.
  2. They resume (checkpointing every 2 steps); once step saved+2 is on disk, process 1 is SIGKILLed:
     process 0 exits non-zero within 60 s (x ARTJAX_TEST_TIMEOUT_SCALE) instead of hanging: with
     artjax's one-line error when a collective fails, else aborted by JAX's heartbeat check.
  3. One process with one device resumes from a copy of the same SIGTERM checkpoint to saved+2: the
     same parameters and optimizer state as the 2-process checkpoint (rtol 1e-5, atol 1e-6: only the
     order of the batch reductions differs), the same step and RNG exactly.
  """
  two, one = tmp_path / "two", tmp_path / "one"
  args = ["--config", "configs/gan/digits_dcgan.py:smoke", "--config.total_steps=100000", "--config.log_every=1",
          "--config.sample_every=0", "--config.keep_checkpoints=100", "--heartbeat_timeout=10"]
  procs = two_processes(runs, "term", [*args, "--config.checkpoint_every=0", "--workdir", str(two)])
  wait_until(lambda: logged_steps(two) >= 3, 180, procs, "2-process training")
  procs[1].send_signal(signal.SIGTERM)  # only process 1: process 0 learns it at the agreement step
  outs = [runs.wait(p, 120) for p in procs]
  (saved,) = listed_steps(two)
  # Process 0 did not receive the signal itself: it prints no "SIGTERM:" line, only where it stopped.
  assert saved % 10 == 0 and f"done at step {saved} " in outs[0][0], outs[0][0][-1500:]
  shutil.copytree(two / "checkpoints", one / "checkpoints")

  procs = two_processes(runs, "dies", [*args, "--config.checkpoint_every=2", "--workdir", str(two)])
  wait_until(lambda: saved + 2 in listed_steps(two), 180, procs, f"the 2-process resume to save step {saved + 2}")
  runs.kill(procs[1])
  t = time.time()
  out, err = runs.wait(procs[0], 60, rc=None)
  assert "resumed from" in out and procs[0].returncode != 0 and time.time() - t < timeout(60)
  if procs[0].returncode == 2:  # a collective in flight failed: artjax's one-line error
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: process 0 of 2 stopped:"), err[-3000:]
  else:  # blocked elsewhere (e.g. a checkpoint barrier): JAX's coordination service aborts it after
    # --heartbeat_timeout, with its own multi-line fatal log (no Python hook exists for it in jax 0.10)
    assert procs[0].returncode == -signal.SIGABRT, (procs[0].returncode, err[-3000:])
    assert "Terminating process because the JAX distributed service detected fatal errors" in err

  out, _ = runs.run("one", [*args, "--config.checkpoint_every=0", f"--stop_at={saved + 2}", "--workdir", str(one)])
  assert "resumed from" in out and "devices: 1 x cpu in 1 process(es)" in out
  a, b = restore_everything(two, saved + 2)[1], restore_everything(one, saved + 2)[1]
  assert int(a["train"]["step"]) == int(b["train"]["step"]) == saved + 2
  np.testing.assert_array_equal(a["train"]["rng"], b["train"]["rng"])
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def test_distributed_flags():
  from artjax.errors import ArtjaxError
  from artjax.train.__main__ import distributed_kwargs

  assert distributed_kwargs(None, None, None, False) is None
  assert distributed_kwargs(None, None, None, True) == {}  # auto-detection
  assert distributed_kwargs("h:1", 2, 1, False) == {"coordinator_address": "h:1", "num_processes": 2,
                                                    "process_id": 1}
  for bad, match in [((None, 2, None), "--num_processes given without --coordinator_address, --process_id"),
                     (("h:1", 2, None), "without --process_id"), (("h:1", 2, 2), "must be below"),
                     (("h", 2, 0), "host:port")]:
    with pytest.raises(ArtjaxError, match=match):
      distributed_kwargs(*bad, False)


def test_distributed_initialize_gets_timeouts_and_clear_errors(monkeypatch):
  from artjax.errors import ArtjaxError
  from artjax.train.__main__ import initialize_distributed

  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  initialize_distributed({}, 300, 30, 60)
  assert calls == [{"initialization_timeout": 300, "heartbeat_timeout_seconds": 30, "shutdown_timeout_seconds": 60}]

  def fail(**kw):
    raise ValueError("coordinator_address should be defined.")

  monkeypatch.setattr(jax.distributed, "initialize", fail)
  with pytest.raises(ArtjaxError, match="found no cluster"):
    initialize_distributed({}, 300, 30, 60)
  with pytest.raises(ArtjaxError, match="could not join the 2-process run at h:1"):
    initialize_distributed({"coordinator_address": "h:1", "num_processes": 2, "process_id": 0}, 5, 30, 60)


def test_gs_workdir_is_not_mangled():
  from artjax.checkpoint import checkpoint_dir, workdir_path

  assert str(checkpoint_dir("gs://bucket/runs/a")) == "gs://bucket/runs/a/checkpoints"
  assert str(workdir_path("gs://bucket/runs/a")) == "gs://bucket/runs/a"
  local = checkpoint_dir("runs/a")
  assert local.is_absolute() and local.parts[-3:] == ("runs", "a", "checkpoints")


def test_launch_files_are_valid(tmp_path):
  launch = ROOT / "launch"
  scripts = sorted(launch.glob("*.sh")) + sorted(launch.glob("*.sbatch"))
  assert scripts
  for script in scripts:
    p = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert p.returncode == 0, f"{script.name}: {p.stderr}"
  manifests = sorted(launch.glob("*.yaml"))
  assert manifests
  yaml = pytest.importorskip("yaml")
  for manifest in manifests:
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert docs and all("kind" in d and "apiVersion" in d for d in docs), manifest.name
    text = manifest.read_text()
    assert "artjax.train" in text and "--distributed" in text
