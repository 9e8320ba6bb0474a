r"""Training and sampling throughput of the music models, in frames (steps of the grid) per second.

  python tools/bench_music.py --data_dir /path/to/jsb_chorales [--configs jsb_lstm,jsb_tcn,...] \
      [--steps 50] [--num 16] [--frames 64] [--json out.json]

Training: steady-state train steps of each config (its batch size and seq_len; a whole chorale per
example for the frame models), frames/s = batch * seq_len / step time. Sampling: `Sampler.sample(num,
frames=F)` with freshly initialised weights (speed does not depend on the weights), after a first call
that compiles; frames/s = num * F / time (for Coconet one frame is a step of all four voices, redrawn
`gibbs_steps` times). One JSON line per config; results: experiments/README.md.
"""

import json
import tempfile
import time

import jax
from absl import flags, logging

from artjax import errors

_DATA = flags.DEFINE_string("data_dir", None, "Directory of the JSB Chorales files.")
_CONFIGS = flags.DEFINE_list("configs", ["jsb_lstm", "jsb_tcn", "jsb_transformer", "jsb_coconet"],
                             "Config names under configs/music (with :arg, e.g. jsb_coconet:gpu).")
_STEPS = flags.DEFINE_integer("steps", 50, "Timed train steps.")
_NUM = flags.DEFINE_integer("num", 16, "Samples per timed sampling call.")
_FRAMES = flags.DEFINE_integer("frames", 64, "Frames per sample.")
_JSON = flags.DEFINE_string("json", None, "Also append the figures to this JSON-lines file.")
flags.mark_flags_as_required(["data_dir"])


def bench(name: str) -> dict:
  from artjax.inference import Sampler
  from artjax.train.loop import Trainer
  from artjax.train.state import sampling_params
  from artjax.utils.config import load_config

  path, _, arg = name.partition(":")
  config = load_config(f"configs/music/{path}.py" + (f":{arg}" if arg else ""), {"data.dir": _DATA.value})
  trainer = Trainer(config, tempfile.mkdtemp())
  state = trainer.init_state()
  compiled, compile_sec = trainer.compile(state)
  batches = [trainer.global_batch(i) for i in range(4)]
  state, _ = compiled(state, batches[0])
  jax.block_until_ready(state)
  t = time.perf_counter()
  for i in range(_STEPS.value):
    state, metrics = compiled(state, batches[i % 4])
  jax.block_until_ready((state, metrics))
  step_sec = (time.perf_counter() - t) / _STEPS.value
  frames_per_example = config.data.seq_len

  sampler = Sampler(trainer.config, trainer.method, sampling_params(state.params, None), state.model_state,
                    step=0, max_batch=_NUM.value)
  t = time.perf_counter()
  sampler.sample(_NUM.value, 0, frames=_FRAMES.value)
  first_sec = time.perf_counter() - t
  t = time.perf_counter()
  sampler.sample(_NUM.value, 1, frames=_FRAMES.value)
  sample_sec = time.perf_counter() - t
  return {
      "config": name, "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
      "jax": jax.__version__, "batch_size": config.batch_size, "seq_len": frames_per_example,
      "train_ms_per_step": round(step_sec * 1e3, 2),
      "train_frames_per_sec": round(config.batch_size * frames_per_example / step_sec, 1),
      "train_compile_sec": round(compile_sec, 1),
      "sample_num": _NUM.value, "sample_frames": _FRAMES.value, "sample_first_call_sec": round(first_sec, 2),
      "sample_sec": round(sample_sec, 3), "sample_frames_per_sec": round(_NUM.value * _FRAMES.value / sample_sec, 1),
  }


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  for name in _CONFIGS.value:
    result = bench(name)
    print(json.dumps(result), flush=True)
    if _JSON.value:
      with open(_JSON.value, "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
  errors.run(main)
