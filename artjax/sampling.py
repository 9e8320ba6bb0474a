"""Sampling from checkpoints as a library: load a run, generate batches, walk the latent space."""

from artjax import errors


def define_option_flags():
  """Defines the CLI flags of the families' sampling options; returns `() -> dict` of those given."""
  from absl import flags

  defined = {
      "label": flags.DEFINE_integer("label", None, "Class to generate (class-conditional models), e.g. 8 for eights."),
      "guidance": flags.DEFINE_float("guidance", None, "Classifier-free guidance scale (0: unconditional, "
                                     "1: conditional)."),
      "sampler": flags.DEFINE_string("sampler", None, "Sampler of the family, e.g. ddpm | ddim for diffusion."),
      "steps": flags.DEFINE_integer("steps", None, "Sampler steps (diffusion)."),
      "eta": flags.DEFINE_float("eta", None, "DDIM eta (0: deterministic; 1: DDPM-like noise)."),
      # Language models (names as in completion APIs; --max-tokens style dashes work too).
      "prompt": flags.DEFINE_string("prompt", None, "Text the samples continue (language models)."),
      "max_tokens": flags.DEFINE_integer("max_tokens", None, "Number of tokens to generate."),
      "temperature": flags.DEFINE_float("temperature", None, "Softmax temperature (0: greedy)."),
      "top_k": flags.DEFINE_integer("top_k", None, "Sample among the k most likely tokens (0: all)."),
      "top_p": flags.DEFINE_float("top_p", None, "Nucleus sampling: the smallest set with this much mass."),
      "stop": flags.DEFINE_multi_string("stop", None, "Cut each sample before this string (repeatable)."),
      "form": flags.DEFINE_string("form", None, "Poem form: 五言绝句 七言绝句 五言律诗 七言律诗 "
                                  "(or wuyan-jueju, qiyan-jueju, wuyan-lushi, qiyan-lushi)."),
      "acrostic": flags.DEFINE_string("acrostic", None, "藏头诗: the first character of each line, e.g. 春夏秋冬."),
      "script": flags.DEFINE_enum("script", None, ["simplified", "traditional"], "Chinese script of the output "
                                  "(converted with OpenCC)."),
      "cache": flags.DEFINE_bool("cache", None, "KV-cache decoding (--nocache: re-run the model per token)."),
  }

  def given():
    options = {name: flag.value for name, flag in defined.items() if flag.value is not None}
    if "stop" in options:  # a shell passes --stop "\n\n" as backslash-n: read it as the escape it means
      options["stop"] = [_unescape(x) for x in options["stop"]]
    return options

  return given


def _unescape(text: str) -> str:
  """Python string escapes (\\n, \\t, \\u2028...) in `text` decoded; other characters (e.g. CJK) kept."""
  return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def load(workdir, step=None, ema=True):
  """(config, method, params, model_state) of a checkpoint: all that sampling needs."""
  from artjax import methods
  from artjax.train.checkpoint import open_for_reading
  from artjax.train.state import sampling_params

  ckpt = open_for_reading(workdir)
  try:
    config, items = ckpt.restore_model(step)
  finally:
    ckpt.close()
  params = sampling_params(items["params"], items["ema_params"] if ema else None)
  return config, methods.build(config), params, items["model_state"]


def generate(method, params, model_state, num: int, seed: int, batch: int = 256, **options):
  """`num` samples in chunks of `batch` (one compiled function; the last chunk is cut, not recompiled)."""
  import jax
  import numpy as np

  if num <= 0:
    raise errors.ArtjaxError(f"--num must be positive, got {num}")
  method.check_options(options)
  batch = min(batch, num)
  key = jax.random.key(seed)
  if not method.traceable_sample:  # the method compiles its own loop (text)
    return [x for i in range(-(-num // batch))
            for x in method.sample(params, model_state, jax.random.fold_in(key, i), min(batch, num - i * batch),
                                   **options)]
  fn = jax.jit(lambda p, ms, rng: method.sample(p, ms, rng, batch, **options))
  chunks = [np.asarray(fn(params, model_state, jax.random.fold_in(key, i))) for i in range(-(-num // batch))]
  return np.concatenate(chunks)[:num]


def interpolate(method, params, model_state, rows: int, cols: int, seed: int, **options):
  """(rows * cols) outputs: row r walks (slerp) from one prior draw to another in `cols` steps.

  Every image is decoded with the same decode key, so only the latent changes along a row (use a
  deterministic sampler, e.g. DDIM, for diffusion).
  """
  import jax
  import jax.numpy as jnp
  import numpy as np

  from artjax.methods.base import slerp

  if rows <= 0 or cols < 2:
    raise errors.ArtjaxError(f"interpolation needs --num >= 1 rows and --interpolate >= 2 steps, got {rows}, {cols}")
  method.check_options(options)
  key = jax.random.key(seed)

  if "label" in method.sample_options and options.get("label") is None:
    # Class-balanced labels would change class along a row: give each row one class instead.
    options["label"] = np.repeat(np.arange(rows) % method.num_classes, cols)

  def fn(p, ms):
    a, b = method.prior(jax.random.fold_in(key, 0), rows), method.prior(jax.random.fold_in(key, 1), rows)
    t = jnp.linspace(0.0, 1.0, cols)
    z = jax.vmap(lambda ti: slerp(a, b, ti))(t)           # (cols, rows, ...)
    z = jnp.swapaxes(z, 0, 1).reshape((rows * cols,) + a.shape[1:])
    return method.decode(p, ms, z, jax.random.fold_in(key, 2), **options)

  return np.asarray(jax.jit(fn)(params, model_state))
