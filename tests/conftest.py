"""Shared fixtures: a private TMPDIR, the offline datasets in ../shared, and CLI runners."""

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
  # JAX's persistent compilation cache, shared by this session's processes: the ~60 subprocess runs
  # (CLIs, workers) compile the same smoke programs again and again. ARTJAX_TEST_JAX_CACHE=0 turns it off.
  if os.environ.get("ARTJAX_TEST_JAX_CACHE", "1") != "0" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    cache = tempfile.mkdtemp(prefix="artjax-test-jax-cache-")
    config._artjax_jax_cache = cache
    os.environ.update({"JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                       "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})
    import jax

    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  # Tiny models: XLA's compile time dominates, and most of it is optimisation passes that change no maths.
  # Off for this process and (by the environment) every subprocess; ARTJAX_TEST_XLA_OPT=1 keeps them.
  if os.environ.get("ARTJAX_TEST_XLA_OPT") != "1" and "JAX_DISABLE_MOST_OPTIMIZATIONS" not in os.environ:
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    import jax

    jax.config.update("jax_disable_most_optimizations", True)


def pytest_unconfigure(config):
  cache = getattr(config, "_artjax_jax_cache", None)
  if cache:
    import shutil

    shutil.rmtree(cache, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
  # CI (.ci/run) sets ARTJAX_NO_SKIPS=1: a test skipped for a missing ../shared dataset, optional package
  # or system program then fails the run instead of passing quietly.
  if os.environ.get("ARTJAX_NO_SKIPS") != "1":
    return
  reporter = session.config.pluginmanager.get_plugin("terminalreporter")
  skipped = reporter.stats.get("skipped", []) if reporter else []
  if skipped and session.exitstatus == 0:
    reasons = sorted({str(r.longrepr[-1]) if isinstance(r.longrepr, tuple) else str(r.longrepr) for r in skipped})
    if reporter:
      reporter.write_line(f"ARTJAX_NO_SKIPS=1: {len(skipped)} skipped test(s) fail this run: {'; '.join(reasons)}",
                          red=True)
    session.exitstatus = 1


@pytest.fixture(autouse=True)
def _private_tmpdir(tmp_path, monkeypatch):
  # TFDS, orbax and matplotlib leave temp/cache dirs in TMPDIR; keep them inside pytest's tmp.
  d = tmp_path / "_tmp"
  d.mkdir()
  monkeypatch.setenv("TMPDIR", str(d))
  monkeypatch.setenv("MPLCONFIGDIR", str(d))
  monkeypatch.setattr(tempfile, "tempdir", str(d))  # Python caches the temp dir; env alone is too late.


@pytest.fixture
def mnist_dir():
  d = SHARED_DATA / "mnist"
  if not (d / "train-images-idx3-ubyte.gz").is_file():
    pytest.skip("../shared/data/mnist not available")
  return d


def scaled_timeout(seconds: float) -> float:
  """A subprocess time-out, times ARTJAX_TEST_TIMEOUT_SCALE (slower machines: e.g. 3)."""
  return seconds * float(os.environ.get("ARTJAX_TEST_TIMEOUT_SCALE", "1"))


def run_cli(*args, env=None, timeout=300, check=False):
  """Runs `python -m ...` from the project root; returns the CompletedProcess (text). On time-out the
  child is killed (subprocess.run does) and the test fails with TimeoutExpired."""
  full_env = {**os.environ, **(env or {})}
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                        text=True, timeout=scaled_timeout(timeout))
  if check and proc.returncode != 0:
    raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
  return proc


def smoke_config(path="configs/gan/digits_dcgan.py:smoke", **overrides):
  from artjax.utils.config import load_config

  return load_config(str(ROOT / path), overrides)


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory):
  """Tiny trained text / poetry / image runs shared by the server tests (trained once per session)."""
  from serve_runs import make_runs

  return make_runs(tmp_path_factory.mktemp("served_runs"))
