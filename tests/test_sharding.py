"""The same train step on 1 device, 4 emulated devices (replicated and FSDP) and 2 processes agrees."""

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
