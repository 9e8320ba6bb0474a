r"""Prints language-model sampling throughput (new tokens/s), with and without the KV cache.

  python tools/bench_text_sample.py --workdir runs/shakespeare_char [--n 1,16] [--max_tokens 512] [--reps 2]
  python tools/bench_text_sample.py --config configs/text/shakespeare_char_gpu.py --config.data.path=...

Times `generate_tokens`, the compiled decode loop `artjax.sample` runs (one `lax.while_loop` over new
tokens). Without the cache the model re-reads its whole window for every token, as nanoGPT's sampler
does. Compile time is reported separately. Results are in experiments/README.md.
"""

import json
import time

import jax
import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from artjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (random weights; speed only).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run (its latest checkpoint).")
_N = flags.DEFINE_list("n", ["1", "16"], "Sequences per call (batch sizes) to time.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", 512, "New tokens per sequence.")
_REPS = flags.DEFINE_integer("reps", 2, "Timed calls per setting.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  import jax.numpy as jnp

  from artjax import methods
  from artjax.data.text import resolve
  from artjax.inference import Sampler

  if _WORKDIR.value:
    s = Sampler.from_workdir(_WORKDIR.value)
    config, method, params = s.config, s.method, s.params
  elif _CONFIG.value is not None:
    config = resolve(errors.checked_config(_CONFIG.value))
    method = methods.build(config)
    t = config.data.seq_len
    params, _ = method.init(jax.random.key(0), {"tokens": jnp.zeros((2, t + 1), jnp.int32),
                                                "mask": jnp.ones((2, t))})
  else:
    raise errors.ArtjaxError("give --workdir (a trained run) or --config")
  if not hasattr(method, "generate_tokens"):
    raise errors.ArtjaxError(f"the {config.method.name!r} method is not a language model")
  prompt = np.arange(8) % method.tokenizer.vocab_size
  rows = []
  for n in map(int, _N.value):
    for cache in (True, False):
      run = lambda seed: method.generate_tokens(params, jax.random.key(seed), prompt, n, _MAX_TOKENS.value,
                                                temperature=1.0, cache=cache)
      t = time.perf_counter()
      run(0)
      first = time.perf_counter() - t
      t, tokens = time.perf_counter(), 0
      for i in range(_REPS.value):
        tokens += int((run(i + 1) >= 0).sum())
      sec = time.perf_counter() - t
      rows.append({"model": config.model.name, "n": n, "cache": cache, "max_tokens": _MAX_TOKENS.value,
                   "window": method.window, "compile_plus_first_sec": round(first, 2),
                   "tokens_per_sec": round(tokens / sec, 1), "ms_per_token_step": round(1e3 * sec * n / tokens, 3),
                   "device": f"{jax.device_count()} x {jax.devices()[0].device_kind}"})
      print(json.dumps(rows[-1]), flush=True)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  errors.run(main)
