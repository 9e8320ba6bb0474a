r"""Everything experiments/ shows of a trained music run: test NLL, a harmonization, samples, statistics.

  python tools/music_report.py --workdir runs/jsb_tcn --data_dir /path/to/jsb_chorales --out DIR \
      [--step N] [--chorale test/000] [--num 4] [--bars 8] [--seed 0] [--order chronological] [--skip_nll]

Writes to DIR: report.json (and prints it), harmonization.{mid,wav,png} (the chosen test chorale's
soprano kept, the model writes the rest), bach.{mid,png} (that chorale as Bach wrote it, for
comparison), samples.{mid,wav,png} (unconditional). NLL: frame models (piano_roll) exactly over the
whole test split in nats per frame (targets frames[1:], as Bai et al. 2018); Coconet the ordered NLL
(`--order` chronological or random) of every test window, in nats per 16th-note step (four voices)
and per note. Listen-free statistics, for the samples and for the test split on the same grid:
pitch range per voice, the share of parallel fifths and octaves among voice pairs that move, notes
sounding per frame. Voices of a roll are its lowest and highest notes (the outer voices).
"""

import io
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags, logging

from artjax import errors

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of a music run.")
_DATA = flags.DEFINE_string("data_dir", None, "Directory of the JSB Chorales files (overrides the run's).")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_CHORALE = flags.DEFINE_string("chorale", "test/000", "The test chorale whose soprano is harmonized.")
_NUM = flags.DEFINE_integer("num", 4, "Unconditional samples.")
_BARS = flags.DEFINE_integer("bars", 8, "Bars per unconditional sample.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_ORDER = flags.DEFINE_enum("order", "chronological", ["chronological", "random"], "Coconet NLL ordering.")
_BATCH = flags.DEFINE_integer("batch", 64, "Windows per compiled NLL call.")
_SKIP_NLL = flags.DEFINE_bool("skip_nll", False, "Skip the test NLL.")
flags.mark_flags_as_required(["workdir", "out"])

PERFECT = (0, 7)  # interval classes of octaves/unisons and fifths


def outer_voices(roll: np.ndarray) -> np.ndarray:
  """(T, 88) roll -> (T, 2) MIDI pitches of its highest and lowest notes (-1 where silent)."""
  from artjax.encoders.music import KEYS, LOWEST_KEY

  on = roll.astype(bool)
  any_on = on.any(axis=1)
  top = KEYS - 1 - np.argmax(on[:, ::-1], axis=1) + LOWEST_KEY
  low = np.argmax(on, axis=1) + LOWEST_KEY
  return np.stack([np.where(any_on, top, -1), np.where(any_on, low, -1)], axis=1)


def statistics(pieces: list[np.ndarray], representation: str) -> dict:
  """Listen-free statistics of pieces ((T, V) voices with -1 rests, or (T, 88) rolls)."""
  notes_per_frame, parallels, moving = [], 0, 0
  lows, highs = None, None
  for p in pieces:
    if representation == "roll":
      notes_per_frame.append(p.sum(axis=1))
      voices = outer_voices(p)
    else:
      notes_per_frame.append((p >= 0).sum(axis=1))
      voices = p
    v = voices.shape[1]
    masked = np.where(voices >= 0, voices, np.nan)
    lo, hi = np.nanmin(masked, axis=0), np.nanmax(masked, axis=0)
    lows = lo if lows is None else np.fmin(lows, lo)
    highs = hi if highs is None else np.fmax(highs, hi)
    for i in range(v):
      for j in range(i + 1, v):
        a, b = voices[:, i], voices[:, j]
        sound = (a[:-1] >= 0) & (b[:-1] >= 0) & (a[1:] >= 0) & (b[1:] >= 0)
        move = sound & (a[1:] != a[:-1]) & (b[1:] != b[:-1])  # both voices move
        before, after = (a[:-1] - b[:-1]) % 12, (a[1:] - b[1:]) % 12
        parallel = move & (before == after) & np.isin(before, PERFECT)
        moving += int(move.sum())
        parallels += int(parallel.sum())
  return {"pitch_range_per_voice": [[int(l), int(h)] for l, h in zip(lows, highs)],
          "parallel_fifths_octaves_share": parallels / max(moving, 1), "moving_voice_pairs": moving,
          "notes_per_frame": float(np.concatenate(notes_per_frame).mean())}


def test_nll(sampler, data_cfg) -> dict:
  from artjax import data
  from artjax.eval.split import evaluate_split

  method = sampler.method
  if hasattr(method, "ordered_nll"):
    source = data.make_source(data_cfg, "test")
    fn = jax.jit(lambda p, v, m: method.ordered_nll(p, v, m, _ORDER.value, jax.random.key(0)))
    total, steps, notes = 0.0, 0.0, 0.0
    for s in range(0, len(source), _BATCH.value):
      rows = [source[i] for i in range(s, min(len(source), s + _BATCH.value))]
      pad = _BATCH.value - len(rows)
      voices = np.stack([r["voices"] for r in rows] + [rows[0]["voices"]] * pad)
      mask = np.stack([r["mask"] for r in rows] + [np.zeros_like(rows[0]["mask"])] * pad)
      total += float(jnp.sum(fn(sampler.params, jnp.asarray(voices), jnp.asarray(mask))))
      steps += float(mask.sum())
      notes += float(mask.sum()) * 4
    return {"order": _ORDER.value, "nll_per_step": total / steps, "nll_per_note": total / notes,
            "steps": steps, "windows": len(source), "window_steps": int(data_cfg.seq_len)}
  return evaluate_split(method, sampler.params, sampler.model_state, data_cfg, "test", 64)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from artjax import data, encoders
  from artjax.encoders.music import Piece
  from artjax.inference import Sampler, Samples

  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  sampler = Sampler.from_workdir(_WORKDIR.value, _STEP.value)
  config = sampler.config
  data_cfg = config.data.copy_and_resolve_references()
  if _DATA.value:
    data_cfg.dir = _DATA.value
  representation = data_cfg.representation
  spq = int(data_cfg.steps_per_quarter)
  report = {"workdir": _WORKDIR.value, "step": sampler.step, "family": config.method.name,
            "model": config.model.name, "device": jax.devices()[0].device_kind, "jax": jax.__version__,
            "grid": f"{spq} step(s) per quarter note", "data_file": data_cfg.get("file")}
  if not _SKIP_NLL.value:
    t = time.perf_counter()
    report["test_nll"] = test_nll(sampler, data_cfg)
    report["test_nll"]["seconds"] = round(time.perf_counter() - t, 1)

  test = data.make_source(data_cfg, "test")
  names = list(test.names)
  if _CHORALE.value not in names:
    raise errors.ArtjaxError(f"--chorale {_CHORALE.value!r} is not in the test split ({names[0]}..{names[-1]})")
  bach = test.pieces[names.index(_CHORALE.value)]
  melody = bach[:, :1] if representation == "voices" else outer_voices(bach)[:, :1]
  buf = io.BytesIO()
  Piece(melody, "voices", spq, 80.0).to_midi().write(buf)

  def write(samples, stem, formats):
    for fmt in formats:
      encoders.write(samples, out / f"{stem}.{fmt}")

  harm = sampler.sample(1, _SEED.value, harmonize=buf.getvalue())
  write(harm, "harmonization", ("mid", "wav", "png"))
  kept = harm.items[0].notes
  top = kept[:, 0] if representation == "voices" else outer_voices(kept)[:, 0]
  # A roll model is free at the melody's rests (its other voices may sound): compare where it sounds.
  sounding = melody[:, 0] >= 0 if representation == "roll" else np.ones(len(melody), bool)
  report["harmonization"] = {"chorale": _CHORALE.value, "steps": int(len(melody)),
                             "soprano_kept": bool(np.array_equal(top[sounding], melody[sounding, 0]))}
  bach_samples = Samples("music", [Piece(bach, representation, spq, 80.0)],
                         {"model": "J. S. Bach", "chorale": _CHORALE.value, "options": {}}, config)
  write(bach_samples, "bach", ("mid", "png"))

  samples = sampler.sample(_NUM.value, _SEED.value, bars=_BARS.value)
  write(samples, "samples", ("mid", "wav", "png"))
  report["statistics"] = {
      "samples": statistics([p.notes for p in samples.items], representation),
      "harmonization": statistics([kept], representation),
      "test_split": statistics(list(test.pieces), representation)}
  (out / "report.json").write_text(json.dumps(report, indent=2))
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  errors.run(main)
