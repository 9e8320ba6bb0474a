"""The same train step on 1 device, 4 emulated devices (replicated and FSDP) and 2 processes agrees."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

WORKER = str(ROOT / "tests" / "workers" / "one_step.py")


def run_worker(out, *extra):
  p = subprocess.run([sys.executable, WORKER, "--out", str(out), *extra], cwd=ROOT, capture_output=True,
                     text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def assert_same_step(a_path, b_path):
  a, b = np.load(a_path), np.load(b_path)
  assert sorted(a.files) == sorted(b.files)
  assert any(k.startswith("metric/") for k in a.files) and len(a.files) > 10
  for k in a.files:
    # Param deltas of SGD(lr=1) are the gradients; reductions differ in order across shards.
    np.testing.assert_allclose(a[k], b[k], rtol=2e-4, atol=2e-5, err_msg=k)
  assert np.abs(a["['generator']['Dense_0']['kernel']"]).max() > 0, "gradients must be non-zero"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
  out = tmp_path_factory.mktemp("single") / "one.npz"
  run_worker(out, "--devices", "1")
  return out


def test_four_devices_data_parallel(single, tmp_path):
  stdout = run_worker(tmp_path / "four.npz", "--devices", "4")
  assert "devices 4" in stdout
  assert_same_step(single, tmp_path / "four.npz")


def test_four_devices_fsdp(single, tmp_path):
  stdout = run_worker(tmp_path / "fsdp.npz", "--devices", "4", "--strategy", "fsdp")
  assert "'data'" in stdout, "FSDP must actually shard some parameter along 'data'"
  assert_same_step(single, tmp_path / "fsdp.npz")


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_jax_distributed(single, tmp_path):
  coord = f"127.0.0.1:{free_port()}"
  procs = [subprocess.Popen([sys.executable, WORKER, "--out", str(tmp_path / "dist.npz"), "--devices", "2",
                             "--coordinator", coord, "--num_processes", "2", "--process_id", str(i)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "devices 4 processes 2" in outs[0][0]
  assert_same_step(single, tmp_path / "dist.npz")


def test_two_process_training_run_matches_one_process(tmp_path):
  """The real CLI in 2 processes: checkpoints, sample grids and resume, with the same result as 1 process."""
  common = ["-m", "artjax.train", "--config", "configs/gan/digits_dcgan.py:smoke", "--config.total_steps=6",
            "--config.checkpoint_every=2", "--config.sample_every=2"]
  single = subprocess.run([sys.executable, *common, "--workdir", str(tmp_path / "one"), "--stop_at=4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]

  def two_processes(*extra):
    coord = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen([sys.executable, *common, "--workdir", str(tmp_path / "two"), *extra,
                               "--coordinator_address", coord, "--num_processes", "2", "--process_id", str(i)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
      assert p.returncode == 0, err[-3000:]
    return outs[0][0]

  first = two_processes("--stop_at=4")
  assert "devices: 4 x cpu in 2 process(es)" in first
  assert (tmp_path / "two" / "samples" / "step_0000004.png").is_file()
  resumed = two_processes()
  assert "resumed from" in resumed and "done at step 6" in resumed
  # Same parameters at step 4 as the single-process run (sampled through the real tool).
  outs = []
  for name in ("one", "two"):
    out = tmp_path / f"{name}.npy"
    p = subprocess.run([sys.executable, "-m", "artjax.sample", "--workdir", str(tmp_path / name), "--step", "4",
                        "--num", "8", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    outs.append(np.load(out).astype(np.int32))
  assert np.abs(outs[0] - outs[1]).max() <= 2


def test_language_model_two_processes_match_one(tmp_path):
  """A text run in 2 processes x 2 devices: same validation loss (exact split eval across hosts) as 1 process."""
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("".join(np.random.default_rng(0).choice(list("abcdefgh \n"), 4000)))
  common = ["-m", "artjax.train", "--config", "configs/text/shakespeare_char.py:smoke", f"--config.data.path={corpus}"]
  single = subprocess.run([sys.executable, *common, "--workdir", str(tmp_path / "one")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]
  coord = f"127.0.0.1:{free_port()}"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  procs = [subprocess.Popen([sys.executable, *common, "--workdir", str(tmp_path / "two"), "--coordinator_address",
                             coord, "--num_processes", "2", "--process_id", str(i)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  val = lambda text: [line for line in text.splitlines() if line.startswith("step 4: val loss")]
  one, two = val(single.stdout + single.stderr), val(outs[0][0] + outs[0][1])
  assert one and two
  a, b = (float(lines[0].split()[4].rstrip(",")) for lines in (one, two))
  assert abs(a - b) < 1e-4, (one, two)
  assert (tmp_path / "two" / "samples" / "step_0000004.txt").is_file()
