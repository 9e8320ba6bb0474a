"""Tiny trained runs for the server tests: a character LM, a Tang-poetry LM, a class-conditional GAN, and
a piano-roll TCN on a folder of MIDI files."""

import json
import pathlib

import numpy as np

from conftest import smoke_config

HANZI = "春夏秋冬山水風月花鳥雲日天人不白黃河入海流欲窮千里目更上一層樓明前床光疑是地霜舉頭望低思故鄉"


def _poems(rng, n=40):
  poems = []
  for _ in range(n):
    lines = ["".join(rng.choice(list(HANZI), 5)) for _ in range(4)]
    poems.append({"title": "t", "author": "a", "paragraphs": [f"{lines[0]}，{lines[1]}。", f"{lines[2]}，{lines[3]}。"]})
  return poems


def write_midi(path: pathlib.Path, pitches, steps_per_quarter: int = 2, bpm: float = 120.0):
  """A one-instrument MIDI file: one note per step (-1: a rest) on a grid of `steps_per_quarter`."""
  import pretty_midi

  pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
  inst = pretty_midi.Instrument(0)
  step = 60.0 / (bpm * steps_per_quarter)
  inst.notes = [pretty_midi.Note(80, int(p), t * step, (t + 1) * step) for t, p in enumerate(pitches) if p >= 0]
  pm.instruments.append(inst)
  pm.write(str(path))


def make_runs(root: pathlib.Path) -> dict:
  """{"text", "poetry", "image", "music": workdir}, each trained for a few steps (a few seconds)."""
  from artjax.train.loop import train

  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  corpus = root / "corpus.txt"
  corpus.write_text("".join(rng.choice(list("abcdefgh ijklm\nROMEO:"), 4000)), encoding="utf-8")
  poems = root / "poems"
  poems.mkdir(parents=True, exist_ok=True)
  (poems / "全唐诗").mkdir(exist_ok=True)
  (poems / "全唐诗" / "poet.tang.0.json").write_text(json.dumps(_poems(rng), ensure_ascii=False), encoding="utf-8")
  runs = {"text": root / "text", "poetry": root / "poetry", "image": root / "image"}
  quiet = dict(progress=False)
  train(smoke_config("configs/text/shakespeare_char.py:smoke", **{"data.path": str(corpus), "sample_every": 0,
                                                                   "eval_every": 0}), runs["text"], **quiet)
  train(smoke_config("configs/poetry/tang_transformer.py:smoke", **{"data.dir": str(poems), "sample_every": 0,
                                                                    "eval_every": 0}), runs["poetry"], **quiet)
  gan = smoke_config("configs/gan/digits_dcgan.py:smoke", **{"sample_every": 0})
  with gan.unlocked():
    gan.model.num_classes = 10  # class-conditional: prompts name digits
  train(gan, runs["image"], **quiet)
  midi = root / "midi"
  midi.mkdir(exist_ok=True)
  for i in range(6):  # chords and scales of 24 steps, enough for train and held-out files
    write_midi(midi / f"piece{i}.mid", [60 + (3 * i + t) % 12 for t in range(24)])
  runs["music"] = root / "music"
  music = smoke_config("configs/music/jsb_tcn.py:smoke", **{"data.name": "midi_folder", "data.dir": str(midi),
                                                            "data.steps_per_quarter": 2, "sample_every": 0,
                                                            "eval_every": 0})
  train(music, runs["music"], **quiet)
  return runs
