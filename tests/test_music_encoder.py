"""The music encoder: Pieces to MIDI, WAV, piano-roll PNG and .npy, with their provenance."""

import io
import json
import struct
import wave

import ml_collections
import numpy as np
import pretty_midi
import pytest
from PIL import Image

from artjax import encoders
from artjax.encoders import music
from artjax.encoders.music import Piece
from artjax.errors import ArtjaxError
from artjax.inference import Samples

MS = 1e-3  # seconds: how close read-back note times must be


def _roll_piece():
  """16ths at 120 bpm (0.125 s a step): C4 on steps 0-3 and again 4-7 (merges into one note), E4 2-9,
  G4 at the last step, and a rest at step 10."""
  roll = np.zeros((16, 88), np.uint8)
  roll[0:8, 60 - 21] = 1
  roll[2:10, 64 - 21] = 1
  roll[15, 67 - 21] = 1
  return Piece(roll, "roll", 4, 120)


def _voices_piece(start=0, **kwargs):
  """Quarter-note SATB at 90 bpm (2/3 s a step): two chords, the alto holds, the bass rests at step 2."""
  v = np.array([[72, 67, 64, 48], [71, 67, 62, 43], [72, 67, 64, -1], [72, 67, 64, 48]])
  return Piece(v, "voices", 1, 90, start=start, **kwargs)


def _samples(pieces, **options):
  config = ml_collections.ConfigDict({"data": {"name": "jsb_chorales", "representation": "voices",
                                               "steps_per_quarter": 4}})
  prov = {"model": "m", "family": "coconet", "workdir": None, "step": 1, "ema": False, "seed": 0,
          "num": len(pieces), "options": options, "artjax_version": "x"}
  return Samples("music", list(pieces), prov, config)


def _notes(inst):
  return [(n.pitch, n.start, n.end) for n in sorted(inst.notes, key=lambda n: (n.start, n.pitch))]


def _assert_notes(inst, expected):
  got = _notes(inst)
  assert [p for p, _, _ in got] == [p for p, _, _ in expected]
  np.testing.assert_allclose([(s, e) for _, s, e in got], [(s, e) for _, s, e in expected], atol=MS)


def _read_midi(item):
  return pretty_midi.PrettyMIDI(io.BytesIO(item.data))


def _provenance_of(pm):
  [text] = music.midi_text(pm)
  return json.loads(text)


def _riff_chunks(data: bytes) -> dict:
  assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
  assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
  chunks, pos = {}, 12
  while pos < len(data):
    tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
    chunks[tag] = data[pos + 8:pos + 8 + size]
    pos += 8 + size + size % 2
  return chunks


def _read_wav(item):
  with wave.open(io.BytesIO(item.data)) as w:
    assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, music.SAMPLE_RATE)
    return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32767


def test_piece_fields_defaults_and_errors():
  roll, voices = _roll_piece(), _voices_piece()
  assert roll.programs == (19,) and voices.programs == (52,) * 4
  assert roll.notes.dtype == np.uint8 and voices.notes.dtype == np.int16
  assert (roll.num_steps, voices.num_steps) == (16, 4)
  assert voices.seconds == pytest.approx(4 * 60 / 90)
  for kwargs, match in [({"representation": "midi"}, "representation"),
                        ({"notes": np.zeros((4, 87), np.uint8)}, "shape"),
                        ({"notes": np.full((4, 88), 2, np.uint8)}, "0..1"),
                        ({"notes": np.zeros((4, 88), np.float32)}, "integers"),
                        ({"bpm": 0}, "bpm"), ({"bpm": float("nan")}, "bpm"),
                        ({"steps_per_quarter": 1.5}, "steps_per_quarter"),
                        ({"programs": (19, 20)}, "programs"), ({"programs": (128,)}, "programs"),
                        ({"start": 17}, "start")]:
    fields = {"notes": np.zeros((16, 88), np.uint8), "representation": "roll", "steps_per_quarter": 4,
              "bpm": 120, **kwargs}
    with pytest.raises(ArtjaxError, match=match):
      Piece(**fields)
  with pytest.raises(ArtjaxError, match="-1..127"):
    Piece(np.array([[128]]), "voices", 1, 90)


def test_to_roll():
  roll = _voices_piece().to_roll()
  assert roll.shape == (4, 88) and roll.dtype == np.uint8
  assert [sorted(np.flatnonzero(r) + 21) for r in roll] == [[48, 64, 67, 72], [43, 62, 67, 71],
                                                            [64, 67, 72], [48, 64, 67, 72]]
  assert np.array_equal(_roll_piece().to_roll(), _roll_piece().notes)
  with pytest.raises(ArtjaxError, match="off the piano"):
    Piece(np.array([[10]]), "voices", 1, 90).to_roll()


def test_roll_midi_round_trip():
  [item] = encoders.encode_each(_samples([_roll_piece()]))  # default per-sample format: MIDI
  assert (item.media_type, item.suffix) == ("audio/midi", ".mid")
  pm = _read_midi(item)
  [inst] = pm.instruments
  assert (inst.program, inst.name) == (19, "Piano roll")
  # The repeated C4 (steps 0-3, 4-7) is one note: a binary roll has no onsets.
  _assert_notes(inst, [(60, 0.0, 1.0), (64, 0.25, 1.25), (67, 1.875, 2.0)])
  np.testing.assert_allclose(pm.get_tempo_changes()[1], [120.0])
  assert _provenance_of(pm) == {**_samples([_roll_piece()]).provenance, "index": 0}


def test_voices_midi_round_trip():
  pm = _read_midi(encoders.encode_each(_samples([_voices_piece(programs=(52, 53, 53, 32))]))[0])
  assert [(i.name, i.program) for i in pm.instruments] == [
      ("Soprano", 52), ("Alto", 53), ("Tenor", 53), ("Bass", 32)]
  step = 60 / 90
  soprano, alto, tenor, bass = pm.instruments
  # Equal pitches in a row are one held note; a rest ends one.
  _assert_notes(soprano, [(72, 0, step), (71, step, 2 * step), (72, 2 * step, 4 * step)])
  _assert_notes(alto, [(67, 0, 4 * step)])
  _assert_notes(tenor, [(64, 0, step), (62, step, 2 * step), (64, 2 * step, 4 * step)])
  _assert_notes(bass, [(48, 0, step), (43, step, 2 * step), (48, 3 * step, 4 * step)])
  np.testing.assert_allclose(pm.get_tempo_changes()[1], [90.0], rtol=1e-5)  # whole microseconds a quarter
  np.testing.assert_allclose(pm.get_end_time(), 4 * step, atol=MS)
  assert _voices_piece().to_midi().instruments[0].notes[0].velocity == music.VELOCITY


def test_batch_midi_one_file_with_a_bar_between_and_provenance_without_given_music():
  pieces = [_voices_piece(), _voices_piece()]
  samples = _samples(pieces, prompt="p", prime="TVRoZA==", harmonize="TVRoZA==", temperature=0.5,
                     title="合唱")
  [item] = encoders.encode(samples)  # default: one MIDI for the batch
  pm = _read_midi(item)
  assert len(pm.instruments) == 4  # the pieces share the parts
  second = pieces[0].seconds + 4 * 60 / 90  # a bar (4 quarters) of silence between samples
  assert [n[1] for n in _notes(pm.instruments[1])] == pytest.approx([0.0, second], abs=MS)
  prov = _provenance_of(pm)
  assert "index" not in prov and prov["options"] == {"temperature": 0.5, "title": "合唱"}
  [kept] = encoders.encode(samples, include_prompt=True)
  assert set(_provenance_of(_read_midi(kept))["options"]) == {"prompt", "prime", "harmonize", "temperature",
                                                              "title"}


def test_wav_length_level_and_comment():
  piece = _roll_piece()
  [item] = encoders.encode_each(_samples([piece]), "wav")
  assert (item.media_type, item.suffix) == ("audio/wav", ".wav")
  audio = _read_wav(item)
  assert len(audio) == round(16 * 60 / (120 * 4) * music.SAMPLE_RATE)  # exact: N * 60 / (bpm * spq) s
  assert np.sqrt(np.mean(audio ** 2)) > 0.05
  assert np.abs(audio).max() == pytest.approx(music.PEAK, abs=1e-3)
  comment = _riff_chunks(item.data)[b"LIST"]
  assert comment[:8] == b"INFO" + b"ICMT"
  assert json.loads(comment[12:].split(b"\0")[0].decode("utf-8"))["index"] == 0

  rests = Piece(np.full((8, 4), -1), "voices", 2, 100)
  [silent] = encoders.encode(_samples([rests]), "wav")
  audio = _read_wav(silent)
  assert len(audio) == round(8 * 60 / (100 * 2) * music.SAMPLE_RATE) and not audio.any()

  pieces = [piece, _voices_piece()]
  [both] = encoders.encode(_samples(pieces), "wav")
  seconds = piece.seconds + 4 * 60 / 120 + pieces[1].seconds  # the bar is at the first piece's tempo
  assert len(_read_wav(both)) == round(seconds * music.SAMPLE_RATE)


def test_png_piano_roll():
  pieces = [_voices_piece(start=2), _voices_piece()]
  [item] = encoders.encode(_samples(pieces), "png")
  img = Image.open(io.BytesIO(item.data))
  assert json.loads(img.text["artjax"])["model"] == "m"
  x = np.asarray(img.convert("RGB"))
  pitches = 72 - 43 + 1 + 2 * music.PITCH_MARGIN
  panel_h = pitches * music.PX_PER_SEMITONE
  assert x.shape == (2 * (panel_h + music.PANEL_PAD) + music.PANEL_PAD,
                     4 * music.PX_PER_STEP + 2 * music.PANEL_PAD, 3)
  top = x[music.PANEL_PAD:music.PANEL_PAD + panel_h, music.PANEL_PAD:-music.PANEL_PAD]
  rows = {name: np.flatnonzero((top == colour).all(-1).any(1)).min()
          for name, colour in zip(music.SATB, music.VOICE_COLOURS)}
  assert rows["Soprano"] < rows["Alto"] < rows["Tenor"] < rows["Bass"]  # high pitches on top
  given = (top == music.GIVEN_SHADE).all(-1)
  assert given[:, :2 * music.PX_PER_STEP].any() and not given[:, 2 * music.PX_PER_STEP:].any()

  each = encoders.encode_each(_samples(pieces), "png")
  assert len(each) == 2 and json.loads(Image.open(io.BytesIO(each[1].data)).text["artjax"])["index"] == 1


def test_npy_batch_and_each():
  short = Piece(np.array([[60, 55]]), "voices", 4, 100)
  long = Piece(np.array([[62, 57], [64, 59]]), "voices", 4, 100)
  [item] = encoders.encode(_samples([short, long]), "npy")
  arr = np.load(io.BytesIO(item.data))
  assert arr.dtype == np.int16 and arr.shape == (2, 2, 2) and arr[0, 1].tolist() == [-1, -1]
  rolls = [_roll_piece(), Piece(np.ones((3, 88), np.uint8), "roll", 4, 120)]
  arr = np.load(io.BytesIO(encoders.encode(_samples(rolls), "npy")[0].data))
  assert arr.dtype == np.uint8 and arr.shape == (2, 16, 88) and not arr[1, 3:].any()
  each = [np.load(io.BytesIO(e.data)) for e in encoders.encode_each(_samples(rolls), "npy")]
  assert [a.shape for a in each] == [(16, 88), (3, 88)]
  with pytest.raises(ArtjaxError, match="different kinds"):
    encoders.encode(_samples([short, _roll_piece()]), "npy")


def test_each_gives_one_item_per_sample_and_batch_one():
  samples = _samples([_roll_piece(), _voices_piece(), _roll_piece()])
  for fmt in music.MusicEncoder.formats:
    if fmt != "npy":  # a mixed batch has no one array
      assert len(encoders.encode(samples, fmt)) == 1
      assert len(encoders.encode_each(samples, fmt)) == 3
  with pytest.raises(ArtjaxError, match="unknown format 'ogg'; known: mid, wav, png, npy"):
    encoders.encode(samples, "ogg")


def test_write(tmp_path):
  samples = _samples([_roll_piece(), _roll_piece()])
  assert encoders.default_suffix("music") == ".mid"
  for name in ("x.mid", "x.midi"):
    pm = pretty_midi.PrettyMIDI(str(encoders.write(samples, tmp_path / name)))
    assert len(pm.instruments[0].notes) == 6
  assert np.load(encoders.write(samples, tmp_path / "x.npy")).shape == (2, 16, 88)
  with pytest.raises(ArtjaxError, match=r"use a \.mid or \.midi or \.wav or \.png or \.npy path"):
    encoders.write(samples, tmp_path / "x.ogg")
