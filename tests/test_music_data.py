"""Music data: the jsb_chorales and midi_folder sources, their prepare hooks, MIDI to roll / melody."""

import pathlib
import re

import ml_collections
import numpy as np
import pytest

from artjax import data
from artjax.data import Loader, make_preprocess, make_source, music
from artjax.data.music import KEYS, LOWEST_KEY, MusicSource, melody_from_midi, midi_to_roll
from artjax.errors import ArtjaxError

JSB_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "jsb_chorales"
SIZES = {"train": 229, "valid": 76, "test": 77}


def _config(**data_fields):
  data_fields.setdefault("seq_len", 32)
  return ml_collections.ConfigDict({"seed": 0, "data": data_fields})


@pytest.fixture(scope="module")
def jsb_dir():
  if not (JSB_DIR / "JSB_Chorales.mat").is_file():
    pytest.skip("../shared/data/jsb_chorales not available")
  return str(JSB_DIR)


def _jsb(jsb_dir, split="train", **fields):
  return make_source(_config(name="jsb_chorales", dir=jsb_dir, **fields).data, split)


# ---------------------------------------------------------------------------------------------------
# jsb_chorales


@pytest.mark.parametrize("file", list(music.JSB_FILES))
def test_every_jsb_file_has_the_split_sizes_and_rolls(jsb_dir, file):
  for split, alias in (("train", "train"), ("valid", "val"), ("test", "test")):
    src = _jsb(jsb_dir, alias, file=file)
    assert len(src.pieces) == len(src.names) == SIZES[split]
    assert src.names[0] == f"{split}/000" and src.steps_per_quarter == music.JSB_FILES[file]
    assert all(p.dtype == np.uint8 and p.ndim == 2 and p.shape[1] == KEYS for p in src.pieces)
    assert max(int(p.max()) for p in src.pieces) == 1
  assert len(_jsb(jsb_dir, "valid", file=file)) == len(_jsb(jsb_dir, "val", file=file))


def test_mat_and_quarter_json_are_the_same_chorales(jsb_dir):
  mat, js = (_jsb(jsb_dir, "test", file=f).pieces for f in ("JSB_Chorales.mat", "jsb-chorales-quarter.json"))
  assert all(np.array_equal(a, b) for a, b in zip(mat, js))
  assert sum(len(p) for p in mat) == 4725 and max(len(p) for p in mat) == 160
  npz, sep = (_jsb(jsb_dir, "valid", file=f, representation="voices").pieces for f in music.VOICE_FILES)
  assert all(np.array_equal(a, b) for a, b in zip(npz, sep))


@pytest.mark.parametrize("seq_len", [16, 32, 159, 160, 500])
def test_test_split_scores_every_frame_but_the_first_of_each_chorale_once(jsb_dir, seq_len):
  src = _jsb(jsb_dir, "test", seq_len=seq_len)
  examples = [src[i] for i in range(len(src))]
  assert all(ex["frames"].shape == (seq_len + 1, KEYS) and ex["frames"].dtype == np.uint8 for ex in examples)
  assert all(ex["mask"].shape == (seq_len,) and ex["mask"].dtype == np.float32 for ex in examples)
  assert sum(float(ex["mask"].sum()) for ex in examples) == 4725 - 77 == 4648
  # The windows of each chorale, overlapping by one frame, rebuild it; the scored targets are its frames 1..T-1.
  for p, piece in enumerate(src.pieces):
    rows = [(start, examples[i]) for i, (q, start) in enumerate(src.windows) if q == p]
    targets = np.concatenate([ex["frames"][1:][ex["mask"] > 0] for _, ex in rows])
    np.testing.assert_array_equal(targets, piece[1:])
    assert all(np.array_equal(ex["frames"][0], piece[start]) for start, ex in rows)
  if seq_len >= 160:  # one window per chorale: exact per-chorale evaluation
    assert len(src) == 77
  assert src.preprocess(examples[0], 123) is examples[0]  # eval windows: no augmentation


def test_train_examples_are_random_crops_and_transpositions(jsb_dir):
  src = _jsb(jsb_dir, "train", seq_len=32, transpose=6)
  assert len(src) == 229 and set(src[0]) == {"piece"}
  starts, shifts = set(), set()
  for i in range(40):
    piece = src[i]["piece"]
    ex = src.preprocess(src[i], (0, 1, i))
    assert ex["frames"].shape == (33, KEYS) and ex["frames"].dtype == np.uint8
    assert ex["mask"].shape == (32,) and ex["mask"].dtype == np.float32
    assert ex["mask"].sum() == min(len(piece), 33) - 1
    start, shift = _crop_and_shift(piece, ex["frames"], 6)
    starts.add(start)
    shifts.add(shift)
    again = src.preprocess(src[i], (0, 1, i))
    assert all(np.array_equal(ex[k], again[k]) for k in ex)
  assert len(starts) > 5 and len(shifts) > 3


def _crop_and_shift(piece, frames, max_shift):
  """(start, shift) of the crop of `piece`, moved up `shift` keys, that `frames` (maybe padded) holds."""
  n = min(len(piece), len(frames))
  t, k = np.nonzero(piece)
  for shift in range(-max_shift, max_shift + 1):
    if k.size and not 0 <= k.min() + shift <= k.max() + shift < KEYS:
      continue
    moved = np.zeros_like(piece)
    moved[t, k + shift] = 1
    for start in range(len(piece) - n + 1):
      if np.array_equal(moved[start:start + n], frames[:n]) and not frames[n:].any():
        return start, shift
  raise AssertionError("example is not a transposed crop of the piece")


def _shift_of(piece, frames):
  """The shift between a piece and an example of all of it."""
  return _crop_and_shift(piece, frames, KEYS)[1]


def test_transposition_keeps_every_note_on_the_keyboard():
  # A piece whose notes span columns 80..85: shifts up are limited to +2, down to -10 by `transpose`.
  piece = np.zeros((5, KEYS), np.uint8)
  piece[0, 80] = piece[3, 85] = piece[4, 82] = 1
  src = MusicSource([piece], representation="roll", seq_len=8, split="train", transpose=10)
  shifts = {_shift_of(piece, src.preprocess(src[0], seed)["frames"]) for seed in range(200)}
  assert shifts == set(range(-10, 3))
  # A piece whose notes span the whole keyboard can't move.
  piece[1, 0] = piece[2, KEYS - 1] = 1
  ex = src.preprocess({"piece": piece}, 7)
  np.testing.assert_array_equal(ex["frames"][:5], piece)
  # No transposition, piece shorter than the window: padded, mask over its 4 targets.
  src = MusicSource([piece], representation="roll", seq_len=8, split="train")
  ex = src.preprocess(src[0], 0)
  assert ex["mask"].tolist() == [1.0] * 4 + [0.0] * 4 and not ex["frames"][5:].any()


def test_voices_examples_classes_and_windows(jsb_dir):
  train = _jsb(jsb_dir, "train", file="Jsb16thSeparated.json", representation="voices", seq_len=64,
               transpose=5)
  assert train.num_pitches == 46 and (train.low_pitch, train.high_pitch) == (36, 81)
  assert all(p.shape[1] == 4 and p.dtype == np.int16 for p in train.pieces)
  ex = train.preprocess(train[0], (0, 1, 0))
  assert ex["voices"].shape == (64, 4) and ex["voices"].dtype == np.int32
  assert ex["mask"].shape == (64,) and ex["mask"].dtype == np.float32 and ex["mask"].all()
  for i in range(60):  # every voice stays in the grid
    ex = train.preprocess(train[i % 229], (0, 1, i))
    assert ex["voices"].min() >= 0 and ex["voices"].max() <= 46
  piece = train[0]["piece"]
  shifts = {_voice_crop_and_shift(piece, train.preprocess(train[0], s)["voices"])[1] for s in range(50)}
  notes = piece[piece >= 0]
  assert shifts == set(range(max(-5, 36 - notes.min()), min(5, 81 - notes.max()) + 1))

  test = _jsb(jsb_dir, "test", file="Jsb16thSeparated.json", representation="voices", seq_len=64)
  examples = [test[i] for i in range(len(test))]
  assert len(test) == sum(-(-len(p) // 64) for p in test.pieces)
  assert sum(float(ex["mask"].sum()) for ex in examples) == 18900  # every step once, no overlap
  last = examples[-1]
  n = len(test.pieces[-1]) % 64 or 64
  assert (last["voices"][n:] == 46).all() and last["mask"].tolist() == [1.0] * n + [0.0] * (64 - n)
  np.testing.assert_array_equal(np.where(last["voices"][:n] == 46, -1, last["voices"][:n] + 36),
                                test.pieces[-1][-n:])


def _voice_crop_and_shift(piece, voices, low=36, rest=46):
  """(start, shift) of the crop of `piece` (pitches, -1 rests), moved `shift` semitones, in `voices` (classes)."""
  pitches = np.where(voices == rest, -1, voices + low)
  for start in range(len(piece) - len(voices) + 1):
    seg = piece[start:start + len(voices)]
    diffs = np.unique(pitches[seg >= 0] - seg[seg >= 0])
    if np.array_equal(seg < 0, pitches < 0) and len(diffs) == 1:
      return start, int(diffs[0])
  raise AssertionError("example is not a transposed crop of the piece")


def test_voices_errors(jsb_dir):
  with pytest.raises(ArtjaxError, match="outside config.data.low_pitch..high_pitch = 40..81: set low_pitch <= 36"):
    _jsb(jsb_dir, file="Jsb16thSeparated.json", representation="voices", low_pitch=40)
  with pytest.raises(ArtjaxError, match="Jsb16thSeparated.json"):
    _jsb(jsb_dir, file="jsb-chorales-16th.json", representation="voices")


def test_loader_batches_are_the_same_on_resume(jsb_dir):
  for fields in ({}, {"file": "Jsb16thSeparated.json", "representation": "voices"}):
    cfg = _config(name="jsb_chorales", dir=jsb_dir, transpose=4, **fields)
    batches = []
    for _ in range(2):
      src = make_source(cfg.data, "train")
      batches.append(Loader(src, make_preprocess(cfg.data, src), 8, seed=3).batch(30))
    assert set(batches[0]) == ({"frames", "mask"} if not fields else {"voices", "mask"})
    assert all(np.array_equal(batches[0][k], batches[1][k]) for k in batches[0])
    assert batches[0]["mask"].shape == (8, 32)
    other = Loader(src, make_preprocess(cfg.data, src), 8, seed=4).batch(30)
    assert any(not np.array_equal(batches[0][k], other[k]) for k in other)


def test_jsb_prepare_fills_the_grid(jsb_dir):
  config = _config(name="jsb_chorales", dir=jsb_dir)
  config.lock()
  out = data.prepare(config)
  assert out is not config and "steps_per_quarter" not in config.data  # a copy
  assert (out.data.steps_per_quarter, out.data.num_keys) == (1, 88)
  assert data.prepare(out) is out  # already filled: unchanged
  out = data.prepare(_config(name="jsb_chorales", dir=jsb_dir, file="jsb-chorales-8th.json"))
  assert out.data.steps_per_quarter == 2
  voices = _config(name="jsb_chorales", dir=jsb_dir, file="Jsb16thSeparated.npz", representation="voices")
  out = data.prepare(voices)
  assert (out.data.steps_per_quarter, out.data.low_pitch, out.data.high_pitch, out.data.num_pitches) == \
      (4, 36, 81, 46)
  # A resumed run keeps its stored pitch range; a file on another time grid can't resume it.
  stored = ml_collections.ConfigDict(dict(steps_per_quarter=4, low_pitch=30, high_pitch=90, num_pitches=61))
  out = data.prepare(voices, stored)
  assert (out.data.low_pitch, out.data.high_pitch, out.data.num_pitches) == (30, 90, 61)
  with pytest.raises(ArtjaxError, match="trained at 4 steps per quarter note, but JSB_Chorales.mat has 1"):
    data.prepare(config, stored)


def test_jsb_config_errors(jsb_dir, tmp_path):
  with pytest.raises(ArtjaxError, match="needs config.data.dir"):
    make_source(_config(name="jsb_chorales").data, "train")
  with pytest.raises(ArtjaxError, match="does not exist or is not a directory"):
    _jsb(str(tmp_path / "nope"))
  with pytest.raises(ArtjaxError, match="has no JSB_Chorales.mat"):
    _jsb(str(tmp_path))
  with pytest.raises(ArtjaxError, match="config.data.file must be one of 'JSB_Chorales.mat'"):
    _jsb(jsb_dir, file="JSB Chorales.pickle")
  with pytest.raises(ArtjaxError, match="representation must be one of 'roll', 'voices'"):
    _jsb(jsb_dir, representation="notes")
  with pytest.raises(ArtjaxError, match="representation must be one of"):
    data.prepare(_config(name="jsb_chorales", dir=jsb_dir, representation="notes"))
  with pytest.raises(ArtjaxError, match="has splits 'train', 'valid', 'val', 'test'"):
    _jsb(jsb_dir, "validation")
  with pytest.raises(ArtjaxError, match="transpose"):
    _jsb(jsb_dir, transpose=-1)
  with pytest.raises(ArtjaxError, match="seq_len"):
    _jsb(jsb_dir, seq_len=0)
  (tmp_path / "JSB_Chorales.mat").write_bytes(b"not a mat file")
  with pytest.raises(ArtjaxError, match="cannot read JSB Chorales"):
    _jsb(str(tmp_path))


# ---------------------------------------------------------------------------------------------------
# MIDI


def _midi(notes, tempo=100.0, drums=(), path=None, program=0):
  """A PrettyMIDI (written to `path` if given) of (pitch, start_quarter, end_quarter) notes."""
  import pretty_midi

  pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
  q = 60.0 / tempo
  for group, is_drum in ((notes, False), (drums, True)):
    if group:
      inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
      inst.notes = [pretty_midi.Note(velocity=80, pitch=p, start=s * q, end=e * q) for p, s, e in group]
      pm.instruments.append(inst)
  if path is not None:
    pm.write(str(path))
  return pm


def test_midi_to_roll_round_trip(tmp_path):
  notes = [(60, 0, 1), (64, 0, 2), (67, 1.5, 2), (21, 3, 3.25), (108, 3.75, 4)]
  path = tmp_path / "a.mid"
  _midi(notes, tempo=90, drums=[(36, 0, 4)], path=path)
  roll = midi_to_roll(path, 4)
  assert roll.shape == (16, KEYS) and roll.dtype == np.uint8
  expected = np.zeros((16, KEYS), np.uint8)
  for p, s, e in notes:
    expected[int(s * 4):int(e * 4), p - LOWEST_KEY] = 1
  np.testing.assert_array_equal(roll, expected)  # drums left out
  np.testing.assert_array_equal(midi_to_roll(path.read_bytes(), 4), expected)
  np.testing.assert_array_equal(midi_to_roll(_midi(notes, tempo=90), 4), expected)
  # Coarser grid: start and end rounded to the nearest step, at least one step per note.
  coarse = midi_to_roll(path, 1)
  assert coarse.shape == (5, KEYS)  # the last note, at quarters 3.75..4, is on at step 4
  assert [np.flatnonzero(coarse[:, p - LOWEST_KEY]).tolist() for p, _, _ in notes] == [[0], [0, 1], [2], [3], [4]]


def test_midi_grid_follows_tempo_changes(tmp_path):
  import mido

  # Quarter notes C, D, E, F; the tempo halves after the second (480 ticks per quarter).
  mid = mido.MidiFile(ticks_per_beat=480)
  track = mido.MidiTrack()
  mid.tracks.append(track)
  track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
  for i, pitch in enumerate((60, 62, 64, 65)):
    if i == 2:
      track.append(mido.MetaMessage("set_tempo", tempo=1000000, time=0))
    track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
    track.append(mido.Message("note_off", note=pitch, velocity=0, time=480))
  mid.save(str(tmp_path / "t.mid"))
  roll = midi_to_roll(tmp_path / "t.mid", 2)
  assert roll.shape == (8, KEYS)
  assert [int(np.flatnonzero(r)[0]) + LOWEST_KEY for r in roll] == [60, 60, 62, 62, 64, 64, 65, 65]


def test_melody_from_midi():
  import pretty_midi

  pm = _midi([(67, 0, 1), (72, 1, 2), (64, 3, 4)], tempo=120)
  bass = pretty_midi.Instrument(program=32)
  bass.notes = [pretty_midi.Note(velocity=80, pitch=74, start=1.0, end=2.0)]  # quarters 2..4
  pm.instruments.append(bass)
  melody = melody_from_midi(pm, 1)
  assert melody.tolist() == [67, 72, -1, 64] and melody.dtype == np.int64
  assert melody_from_midi(pm, 1, instrument=1).tolist() == [-1, -1, 74, 74]
  assert melody_from_midi(pm, 1, instrument=None).tolist() == [67, 72, 74, 74]
  assert melody_from_midi(pm, 2).shape == midi_to_roll(pm, 2).shape[:1] == (8,)
  with pytest.raises(ArtjaxError, match="no instrument 2"):
    melody_from_midi(pm, 1, instrument=2)
  with pytest.raises(ArtjaxError, match="positive integer"):
    midi_to_roll(pm, 0)


def _midi_folder(tmp_path, n=12):
  for i in range(n):
    sub = tmp_path / ("b" if i % 2 else "a")
    sub.mkdir(exist_ok=True)
    _midi([(60 + i, 0, 2), (48, 1, 3 + i % 4)], path=sub / f"song{i:02d}.{'midi' if i % 3 else 'mid'}")
  (tmp_path / "notes.txt").write_text("not midi")
  return tmp_path


def test_midi_folder_splits_and_examples(tmp_path):
  root = _midi_folder(tmp_path)
  cfg = _config(name="midi_folder", dir=str(root), val_fraction=0.4, seq_len=8, transpose=2)
  train, val, test = (make_source(cfg.data, s) for s in ("train", "val", "test"))
  assert sorted(train.names + val.names) == sorted(str(p.relative_to(root)) for p in root.rglob("song*"))
  assert val.names == test.names and train.names and val.names and train.names == sorted(train.names)
  for piece, name in zip(train.pieces, train.names):  # song i lasts 3 + i % 4 quarters
    assert piece.shape == (4 * (3 + int(re.search(r"song(\d+)", name).group(1)) % 4), KEYS)
  assert train.steps_per_quarter == 4
  ex = train.preprocess(train[0], (0, 1, 0))
  assert ex["frames"].shape == (9, KEYS) and ex["mask"].shape == (8,)
  assert sum(float(val[i]["mask"].sum()) for i in range(len(val))) == sum(len(p) - 1 for p in val.pieces)
  # The split of a file depends on its path only: adding files moves no other file.
  _midi([(70, 0, 1)], path=root / "new.mid")
  assert set(val.names) <= set(make_source(cfg.data, "val").names)
  src = make_source(cfg.data, "train")
  a = Loader(src, make_preprocess(cfg.data, src), 4, seed=1).batch(3)
  b = Loader(src, make_preprocess(cfg.data, src), 4, seed=1).batch(3)
  assert all(np.array_equal(a[k], b[k]) for k in a)


def test_midi_folder_bad_files_and_prepare(tmp_path):
  root = _midi_folder(tmp_path, n=4)
  (root / "a" / "broken.mid").write_bytes(b"MThd garbage")
  cfg = _config(name="midi_folder", dir=str(root), val_fraction=0.0)
  with pytest.raises(ArtjaxError, match="broken.mid.*skip_bad_files"):
    make_source(cfg.data, "train")
  cfg.data.skip_bad_files = True
  with pytest.warns(UserWarning, match="skipping a/broken.mid"):
    src = make_source(cfg.data, "train")
  assert len(src) == 4 and "a/broken.mid" not in src.names
  with pytest.raises(ArtjaxError, match="val split of the 5 MIDI file"):
    make_source(cfg.data, "val")
  (root / "empty").mkdir()
  with pytest.raises(ArtjaxError, match="holds no MIDI files"):
    make_source(_config(name="midi_folder", dir=str(root / "empty")).data, "train")
  with pytest.raises(ArtjaxError, match="'roll' only"):
    make_source(_config(name="midi_folder", dir=str(root), representation="voices").data, "train")
  out = data.prepare(cfg)
  assert (out.data.steps_per_quarter, out.data.num_keys) == (4, 88) and data.prepare(out) is out
  out = data.prepare(_config(name="midi_folder", dir=str(root), steps_per_quarter=3),
                     ml_collections.ConfigDict({"steps_per_quarter": 2}))
  assert out.data.steps_per_quarter == 2  # a resumed run keeps its grid
