"""Out of memory or a compile failure gives one line naming the config and the memory the step needs."""

import types

import pytest

from conftest import run_cli, smoke_config

from artjax.errors import ArtjaxError
from artjax.train import loop

XLA_DUMP = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 81.25GiB.\n" + "\n".join(
    f"  buffer {i}: 1.00GiB f32[16384,16384] ..." for i in range(200))


class FakeLowered:
  def __init__(self, error):
    self.error = error

  def compile(self):
    raise self.error


def test_compile_out_of_memory_is_one_line_naming_the_config():
  config = smoke_config()
  with pytest.raises(ArtjaxError) as e:
    loop.compile_or_explain(FakeLowered(RuntimeError(XLA_DUMP)), config)
  msg = str(e.value)
  assert "\n" not in msg and len(msg) < 600
  assert "'dcgan/gan'" in msg and "does not fit in device memory" in msg and "81.25GiB" in msg
  assert "grad_accum_steps" in msg and "remat" in msg
  with pytest.raises(ArtjaxError, match="XLA could not compile the train step: UNIMPLEMENTED: fft"):
    loop.compile_or_explain(FakeLowered(RuntimeError("UNIMPLEMENTED: fft\n" + "x\n" * 100)), config)


def test_the_memory_analysis_is_read_and_checked_against_the_device(tmp_path):
  trainer = loop.Trainer(smoke_config(), tmp_path)
  compiled, _ = trainer.compile(trainer.init_state())
  need = loop.memory_needed(compiled)
  assert need["peak_bytes"] > need["argument_size_in_bytes"] > 0  # the state, a batch, temporaries
  small = types.SimpleNamespace(device_kind="Tiny GPU", memory_stats=lambda: {"bytes_limit": 1024})
  with pytest.raises(ArtjaxError) as e:
    loop.check_fits(compiled, trainer.config, devices=[small])
  assert "\n" not in str(e.value) and "'dcgan/gan'" in str(e.value) and "the Tiny GPU has 0.00 GiB" in str(e.value)
  assert f"needs {need['peak_bytes'] / 2 ** 30:.2f} GiB" in str(e.value)
  big = types.SimpleNamespace(device_kind="Big GPU", memory_stats=lambda: {"bytes_limit": 2 ** 40})
  loop.check_fits(compiled, trainer.config, devices=[big])  # fits: no error
  err = loop.out_of_memory_error(RuntimeError(XLA_DUMP), compiled, trainer.config)
  assert "\n" not in str(err) and "per device (XLA's memory analysis)" in str(err)


def test_the_cli_prints_one_line_for_a_step_that_cannot_compile(tmp_path):
  # A mesh that does not fit the devices stands for any start-up failure: one line, exit 2, no traceback.
  p = run_cli("-m", "artjax.train", "--config", "configs/gan/digits_dcgan.py:smoke", "--workdir", str(tmp_path),
              "--config.mesh.tensor=3")
  assert p.returncode == 2
  assert "Traceback" not in p.stderr and "does not divide the 1 devices" in p.stderr
