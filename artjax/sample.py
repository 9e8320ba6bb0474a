"""CLI: sample from a trained checkpoint.

  python -m artjax.sample --workdir DIR [--step N] [--num 64] [--seed 0] --out samples.png|samples.npy
      [--label 8] [--guidance 3.0] [--sampler ddim --steps 50]     # options the family supports
      [--interpolate 10]                                           # --num rows of 10-step latent walks
  python -m artjax.sample --workdir DIR --prompt "ROMEO:" --max-tokens 300 --temperature 0.8 [--top-k K]
      [--top-p P] [--n N] [--stop STR ...] [--seed S] --out F.txt|F.json    # language models
      [--form 五言绝句|wuyan-jueju ...] [--acrostic 春夏秋冬] [--script simplified|traditional]  # poetry
  python -m artjax.sample --workdir DIR --out chorale.mid|.wav|.png|.npy [--num N] [--seed S] [--temperature T]
      [--frames F | --bars B] [--bpm 80] [--prime primer.mid [--include-prime]] [--harmonize melody.mid]  # music

Restores only the model item (params / EMA params / non-trained collections) and the config saved
with the checkpoint; the same seed gives the same samples, whatever --batch is. Files carry their
provenance (PNG text chunk "artjax", JSON fields): model, step, seed, options, artjax version.
"""

import pathlib

from absl import flags, logging

from artjax import errors
from artjax.sampling import define_option_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_MESH = flags.DEFINE_string("mesh", "", "Hold the weights split over a device mesh, e.g. 'fsdp=8' (sizes multiply to the "
                            "device count); default: whole on one device.")
_NUM = flags.DEFINE_integer("num", None, "Number of samples (rows, with --interpolate); default 64 images, "
                            "1 text.")
flags.DEFINE_alias("n", "num")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BATCH = flags.DEFINE_integer("batch", 256, "Samples generated per compiled call.")
_EMA = flags.DEFINE_bool("ema", None, "Sample with the EMA params (--noema: the raw params); default: the run's "
                        "config.sample_ema (True unless the config says otherwise).")
_OUT = flags.DEFINE_string("out", None, "Output file; its suffix picks the format (.png grid, .npy array; "
                           "text: .txt, .json; music: .mid, .wav, .png piano roll, .npy).")
_RECORD_PROMPT = flags.DEFINE_bool("record_prompt", False, "Also record the prompt in the file's provenance.")
_OPTIONS = define_option_flags()  # --label --guidance --sampler --steps --eta; --prompt --max-tokens ...
_INTERPOLATE = flags.DEFINE_integer(
    "interpolate", 0, "If > 1: a grid of --num rows, each this many slerp steps between two latents.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # Orbax warns about read-only managers; not the user's concern.
  from artjax import encoders
  from artjax.inference import Sampler

  out = pathlib.Path(_OUT.value)
  mesh = None
  if _MESH.value:
    from artjax.train.sharding import make_mesh, parse_mesh

    mesh = make_mesh(parse_mesh(_MESH.value))
  sampler = Sampler.from_workdir(_WORKDIR.value, _STEP.value, _EMA.value, mesh=mesh)
  options = _OPTIONS()
  num = _NUM.value or sampler.method.default_num_samples
  if _INTERPOLATE.value:
    samples = sampler.interpolate(num, _INTERPOLATE.value, _SEED.value, **options)
  else:
    samples = sampler.sample(num, _SEED.value, _BATCH.value, **options)
  path = encoders.write(samples, out, include_prompt=_RECORD_PROMPT.value)
  print(f"wrote {len(samples)} samples to {path}")


if __name__ == "__main__":
  errors.run(main)
