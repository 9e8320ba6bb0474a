"""Music methods end to end: the piano_roll frame models and Coconet.

The NLL of p = 1/2 everywhere (88 ln 2 per frame) and which frames are scored; harmonize keeps the melody
(Coconet: voice 0 step for step; rolls: the melody's key on, none above) through `Sampler.sample`, the
CLI and the server's /v1/audio/music; prime (kept exactly, continued); WAV length and level; seeds and
batch independence; option errors; one training step and a checkpoint round trip per :smoke config.

Data is synthetic (a `midi_folder` of MIDI files written here) except for the Coconet runs, which need
the JSB voices file in ../shared/data/jsb_chorales (skipped when absent). Untrained or 2-step models keep
p close to 1/2 per key, so constraints that sampling alone would break are really tested.
"""

import base64
import io
import json
import math
import socket
import subprocess
import sys
import time
import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import encoders, methods
from artjax.data.music import melody_from_midi, midi_to_roll
from artjax.encoders.music import KEYS, LOWEST_KEY, SAMPLE_RATE
from artjax.inference import Sampler
from artjax.options import OptionError
from conftest import ROOT, SHARED_DATA, run_cli, smoke_config

pretty_midi = pytest.importorskip("pretty_midi")

JSB = SHARED_DATA / "jsb_chorales"
SPQ = 2  # the synthetic piano-roll runs' grid (the jsb configs say 1: this checks it is read from data)
LN2 = math.log(2)
# A melody with rests (-1), on the piano and inside Coconet's 36..81; it ends on a note, so its file is
# exactly this long.
MELODY = [72, 72, 74, -1, 76, 74, -1, 72, 71, 72]


def midi_bytes(voices, spq: int, bpm: float = 120.0) -> bytes:
  """A MIDI file with one instrument per column of `voices` ((T,) or (T, V) pitches, -1: rest), one note
  per step on a grid of `spq` steps per quarter note at `bpm`."""
  voices = np.asarray(voices).reshape(len(voices), -1)
  pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
  step = 60.0 / (bpm * spq)
  for column in voices.T:
    inst = pretty_midi.Instrument(0)
    inst.notes = [pretty_midi.Note(80, int(p), t * step, (t + 1) * step) for t, p in enumerate(column) if p >= 0]
    pm.instruments.append(inst)
  buf = io.BytesIO()
  pm.write(buf)
  return buf.getvalue()


def assert_melody_on_top(roll, melody):
  """Roll (T, 88): at every melody note its key is on and every key above it is off."""
  roll = np.asarray(roll)
  assert len(roll) >= len(melody)
  for t, p in enumerate(melody):
    if p >= 0:
      k = p - LOWEST_KEY
      assert roll[t, k] == 1 and not roll[t, k + 1:].any(), (t, p, np.flatnonzero(roll[t]) + LOWEST_KEY)


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def need_jsb():
  if not (JSB / "Jsb16thSeparated.json").is_file():
    pytest.skip("../shared/data/jsb_chorales/Jsb16thSeparated.json not available")


# --- runs and samplers, built once ------------------------------------------------------------------

@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory):
  """12 random four-note chord progressions at SPQ steps per quarter note."""
  d = tmp_path_factory.mktemp("midi")
  rng = np.random.default_rng(0)
  for i in range(12):
    chords = np.stack([rng.choice(np.arange(48, 80), 4, replace=False) for _ in range(24)])
    (d / f"piece{i:02d}.mid").write_bytes(midi_bytes(chords, SPQ))
  return d


def music_config(name: str, midi_dir=None):
  """configs/music/jsb_NAME.py:smoke for 2 steps, one checkpoint, no eval or samples in the loop; the
  frame models on the synthetic midi_folder, Coconet on the JSB voices file."""
  config = smoke_config(f"configs/music/jsb_{name}.py:smoke", total_steps=2, checkpoint_every=2, log_every=1,
                        eval_every=0, sample_every=0)
  with config.unlocked():
    if name == "coconet":
      config.data.dir = str(JSB)
    else:
      config.data.update(name="midi_folder", dir=str(midi_dir), steps_per_quarter=SPQ)
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, midi_dir):
  """name -> (workdir, host params after training), trained on first use."""
  from artjax.train.loop import train

  root, done = tmp_path_factory.mktemp("music_runs"), {}

  def get(name):
    if name not in done:
      if name == "coconet":
        need_jsb()
      state = train(music_config(name, midi_dir), root / name, progress=False)
      done[name] = (root / name, host(state.params))
    return done[name]

  return get


@pytest.fixture(scope="module")
def roll(runs):
  """The 2-step TCN run's sampler (restored from its checkpoint)."""
  return Sampler.from_workdir(runs("tcn")[0])


@pytest.fixture(scope="module")
def coconet():
  """An untrained Coconet (:smoke sizes, pitches 36..81 at 16ths): needs no data."""
  config = smoke_config("configs/music/jsb_coconet.py:smoke")
  method = methods.build(config)
  batch = {"voices": jnp.zeros((1, 16, 4), jnp.int32), "mask": jnp.ones((1, 16))}
  params, state = jax.jit(method.init)(jax.random.key(0), batch)
  return Sampler(config, method, params, state, name="coconet")


# --- 1. the likelihood ------------------------------------------------------------------------------

def _roll_batch():
  """3 pieces of 16 scored frames: row 0 real up to target frame 10, row 1 not valid (a padded eval
  row), row 2 real up to target frame 3; padding frames are full of notes, so counting them would show."""
  rng = np.random.default_rng(1)
  frames = (rng.random((3, 17, KEYS)) < 0.1).astype(np.uint8)
  frames[0, 11:] = frames[2, 4:] = 1
  mask = np.ones((3, 16), np.float32)
  mask[0, 10:] = mask[2, 3:] = 0
  return {"frames": jnp.asarray(frames), "mask": jnp.asarray(mask), "valid": jnp.asarray([1.0, 0.0, 1.0])}


def test_half_probability_costs_88_ln2_per_frame_and_eval_scores_only_real_targets(roll):
  method, params = roll.method, dict(roll.params)
  batch = _roll_batch()
  frames, mask, valid = (np.asarray(batch[k]) for k in ("frames", "mask", "valid"))
  eval_sums, loss_fn = jax.jit(method.eval_sums), jax.jit(method.loss)
  zero = {**params, "head": jax.tree.map(jnp.zeros_like, params["head"])}  # logits 0: p = 1/2 per key
  sums = jax.device_get(eval_sums(zero, {}, batch))
  assert float(sums["frames"]) == 10 + 3  # frames[1:] where mask and valid
  np.testing.assert_allclose(float(sums["nll"]), 13 * KEYS * LN2, rtol=1e-5)
  summary = method.eval_summary(sums)
  np.testing.assert_allclose([summary["nll"], summary["bits_per_frame"]], [KEYS * LN2, KEYS], rtol=1e-5)
  loss, (_, metrics) = loss_fn(zero, {}, batch, jax.random.key(0))  # dropout cannot move a zero head
  np.testing.assert_allclose([float(loss), float(metrics["nll_per_frame"])], [KEYS * LN2] * 2, rtol=1e-5)

  # A constant logit b: frame nll = 88 softplus(b) - b * (keys on), so which frames count shows.
  b = 0.7
  biased = {**params, "head": {"kernel": jnp.zeros_like(params["head"]["kernel"]),
                               "bias": jnp.full_like(params["head"]["bias"], b)}}
  per_frame = KEYS * math.log1p(math.exp(b)) - b * frames.sum(-1)  # (3, 17)
  scored = mask * valid[:, None]
  sums = jax.device_get(eval_sums(biased, {}, batch))
  np.testing.assert_allclose(float(sums["nll"]), np.sum(per_frame[:, 1:] * scored), rtol=1e-5)
  # Training also scores each piece's first frame (predicted from the start frame), valid or not.
  weights = np.concatenate([mask[:, :1], mask], axis=1)
  loss, _ = loss_fn(biased, {}, batch, jax.random.key(0))
  np.testing.assert_allclose(float(loss), np.sum(per_frame * weights) / weights.sum(), rtol=1e-5)


def test_coconet_uniform_model_costs_ln_classes_per_note_in_every_order(coconet):
  method, params = coconet.method, dict(coconet.params)
  zero = {**params, "conv_out": jax.tree.map(jnp.zeros_like, params["conv_out"])}
  classes = method.num_pitches + 1
  rng = np.random.default_rng(2)
  voices = jnp.asarray(rng.integers(0, classes, (2, 6, 4)), jnp.int32)
  mask = jnp.asarray([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], jnp.float32)
  for order in ("chronological", "random"):
    nll = np.asarray(method.ordered_nll(zero, voices, mask, order, rng=jax.random.key(3)))
    np.testing.assert_allclose(nll, np.array([4, 6]) * 4 * math.log(classes), rtol=1e-5)
  sums = jax.device_get(method.eval_sums(zero, {}, {"voices": voices, "mask": mask, "valid": jnp.ones(2)}))
  assert method.eval_summary(sums)["masked_nll"] == pytest.approx(math.log(classes), rel=1e-5)


# --- 2. harmonize keeps the melody ------------------------------------------------------------------

def test_roll_harmonize_keeps_the_melody_on_top(roll):
  melody = midi_bytes(MELODY, SPQ)
  out = roll.sample(2, seed=1, harmonize=melody)
  rest_steps = [t for t, p in enumerate(MELODY) if p < 0]
  notes_at = [t for t, p in enumerate(MELODY) if p >= 0]
  for piece in out.items:
    assert piece.representation == "roll" and piece.notes.shape == (len(MELODY), KEYS)
    assert_melody_on_top(piece.notes, MELODY)
    # written as MIDI, its top note is the melody's at every melody note
    top_notes = melody_from_midi(_roll_midi(piece), SPQ, instrument=None)
    np.testing.assert_array_equal(top_notes[notes_at], [MELODY[t] for t in notes_at])
  notes = np.stack([p.notes for p in out.items])
  top = max(p for p in MELODY if p >= 0) - LOWEST_KEY
  assert notes[:, :, :top].any(), "the model writes the voices below the melody"
  assert notes[:, rest_steps, top + 1:].any(), "at the melody's rests the model is free"
  # frames / bars cut the melody short; the effective options say so (the server limits them)
  assert [len(p.notes) for p in roll.sample(2, seed=1, harmonize=melody, frames=4).items] == [4, 4]
  assert [len(p.notes) for p in roll.sample(2, seed=1, harmonize=melody, bars=1).items] == [4 * SPQ] * 2
  assert roll.resolve(roll.check({"harmonize": melody}))["frames"] == len(MELODY)


def _roll_midi(piece):
  """A piece written as MIDI by the encoder (what a user gets), as bytes."""
  buf = io.BytesIO()
  piece.to_midi().write(buf)
  return buf.getvalue()


def test_coconet_harmonize_keeps_the_soprano(coconet):
  out = coconet.sample(2, seed=4, harmonize=midi_bytes(MELODY, 4), temperature=1.0)
  for piece in out.items:
    assert piece.representation == "voices" and piece.notes.shape == (len(MELODY), 4)
    np.testing.assert_array_equal(piece.notes[:, 0], MELODY)
    lower = piece.notes[:, 1:]
    assert np.all((lower == -1) | ((lower >= 36) & (lower <= 81)))
  assert not np.array_equal(out.items[0].notes, out.items[1].notes)


@pytest.mark.slow
def test_cli_harmonize_writes_the_melody_as_the_top_voice(roll, runs, tmp_path):
  workdir = runs("tcn")[0]
  (tmp_path / "m.mid").write_bytes(midi_bytes(MELODY, SPQ))
  p = run_cli("-m", "artjax.sample", "--workdir", str(workdir), "--harmonize", str(tmp_path / "m.mid"),
              "--seed", "3", "--out", str(tmp_path / "x.mid"), timeout=240)
  assert p.returncode == 0, p.stderr[-3000:]
  pm = pretty_midi.PrettyMIDI(str(tmp_path / "x.mid"))
  assert pm.get_tempo_changes()[1][0] == pytest.approx(80.0)  # method.bpm of the config
  got = midi_to_roll(pm, SPQ)
  assert_melody_on_top(got, MELODY)
  # the same piece as in-process sampling with the same seed (trailing silent steps are not in the file)
  [want] = roll.sample(1, seed=3, harmonize=midi_bytes(MELODY, SPQ)).items
  np.testing.assert_array_equal(got, want.notes[:len(got)])
  assert not want.notes[len(got):].any()
  meta = json.loads(pm.text_events[0].text)
  assert meta["seed"] == 3 and "harmonize" not in meta["options"]  # the user's melody stays private


# --- 3. prime ---------------------------------------------------------------------------------------

def test_roll_prime_is_kept_and_continued(roll):
  chords = [[60, 64, 67], [60, 64, 67], [62, 65, 69], [62, 65, 69], [59, 62, 67], [60, 64, 67]]
  primer = midi_bytes(chords, SPQ)
  expected = np.zeros((len(chords), KEYS), np.uint8)
  for t, chord in enumerate(chords):
    expected[t, np.asarray(chord) - LOWEST_KEY] = 1
  np.testing.assert_array_equal(midi_to_roll(primer, SPQ), expected)
  with_prime = roll.sample(2, seed=5, prime=primer, include_prime=True, frames=7).items
  alone = roll.sample(2, seed=5, prime=primer, frames=7).items
  for a, b in zip(with_prime, alone):
    assert a.notes.shape == (6 + 7, KEYS) and a.start == 6
    np.testing.assert_array_equal(a.notes[:6], expected)
    assert b.notes.shape == (7, KEYS) and b.start == 0
    np.testing.assert_array_equal(a.notes[6:], b.notes)  # the same continuation
  assert not np.array_equal(with_prime[0].notes[6:], with_prime[1].notes[6:])


def test_coconet_prime_keeps_the_primer_steps(coconet):
  satb = np.array([[72, 67, 64, 48], [72, 67, 64, 48], [71, 67, 62, 43], [71, 65, 62, -1],
                   [72, 64, 60, 48], [74, 65, 62, 50], [76, 67, 60, 48], [76, 67, 60, 48]])
  primer = midi_bytes(satb, 4)
  # 8 + 2 steps: the grid of the harmonize test (no new compile)
  with_prime = coconet.sample(2, seed=6, prime=primer, include_prime=True, frames=2).items
  alone = coconet.sample(2, seed=6, prime=primer, frames=2).items
  for a, b in zip(with_prime, alone):
    assert a.notes.shape == (10, 4) and a.start == 8
    np.testing.assert_array_equal(a.notes[:8], satb)
    assert b.notes.shape == (2, 4) and b.start == 0
    np.testing.assert_array_equal(a.notes[8:], b.notes)


# --- 4. WAV -----------------------------------------------------------------------------------------

def _wav(data: bytes) -> np.ndarray:
  with wave.open(io.BytesIO(data)) as w:
    assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SAMPLE_RATE)
    return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32767


def test_wav_has_the_length_of_its_steps_and_sound(roll, tmp_path):
  samples = roll.sample(2, seed=0, frames=12, bpm=150.0)
  assert [p.bpm for p in samples.items] == [150.0, 150.0]
  step = 60.0 / (150.0 * SPQ)
  path = encoders.write(samples, tmp_path / "x.wav")
  audio = _wav(path.read_bytes())
  # the encoder's rule, exact to the sample: 2 pieces of 12 steps and a bar (4 quarters) between
  assert len(audio) == round((2 * 12 * step + 4 * 60.0 / 150.0) * SAMPLE_RATE)
  assert np.sqrt(np.mean(audio ** 2)) > 0.02 and np.abs(audio).max() > 0.5
  for item in encoders.encode_each(samples, "wav"):
    one = _wav(item.data)
    assert len(one) == round(12 * step * SAMPLE_RATE) and np.sqrt(np.mean(one ** 2)) > 0.02


# --- 5. determinism ---------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["roll", "coconet"])
def test_seed_decides_and_batch_size_does_not(which, request):
  sampler = request.getfixturevalue(which)
  notes = lambda out: np.stack([p.notes for p in out.items])  # noqa: E731
  one_by_one = notes(sampler.sample(4, seed=7, batch=1, frames=10))
  together = notes(sampler.sample(4, seed=7, batch=4, frames=10))
  np.testing.assert_array_equal(one_by_one, together)
  np.testing.assert_array_equal(notes(sampler.sample(2, seed=7, frames=10)), together[:2])
  assert not np.array_equal(notes(sampler.sample(4, seed=8, frames=10)), together)
  assert not np.array_equal(together[0], together[1])


# --- 6. option errors -------------------------------------------------------------------------------

def test_option_errors_name_the_option(roll, coconet):
  for sampler in (roll, coconet):
    with pytest.raises(OptionError) as e:
      sampler.sample(1, frames=4, bars=1)
    assert e.value.param == "bars" and "frames" in str(e.value)
    for name in ("prime", "harmonize"):
      with pytest.raises(OptionError) as e:
        sampler.sample(1, **{name: b"RIFF\x00\x00\x00\x00WAVEfmt not a MIDI file"})
      assert e.value.param == name and f"sampling option {name}" in str(e.value), e.value
      with pytest.raises(OptionError) as e:
        sampler.sample(1, **{name: midi_bytes([-1, -1], 4)})  # parses, holds no notes
      assert e.value.param == name and "no notes" in str(e.value)
    for bad in ({"frames": 0}, {"temperature": -1.0}, {"bpm": 1000.0}):
      with pytest.raises(OptionError) as e:
        sampler.sample(1, **bad)
      assert e.value.param == next(iter(bad))
  for pitch in (90, 30):  # on the piano, outside Coconet's 36..81
    with pytest.raises(OptionError) as e:
      coconet.sample(1, harmonize=midi_bytes([72, pitch, 72], 4))
    assert e.value.param == "harmonize" and str(pitch) in str(e.value) and "36..81" in str(e.value)
  with pytest.raises(OptionError) as e:
    coconet.sample(1, prime=midi_bytes([[72, 67, 64, 30]], 4))
  assert e.value.param == "prime" and "30" in str(e.value)
  with pytest.raises(OptionError) as e:  # a Coconet primer has one instrument per voice
    coconet.sample(1, prime=midi_bytes([72, 74], 4))
  assert e.value.param == "prime" and "instrument" in str(e.value)


def test_melody_notes_off_the_piano_are_refused(coconet):
  for pitch in (110, 12):
    with pytest.raises(OptionError) as e:
      coconet.sample(1, harmonize=midi_bytes([72, pitch, 72], 4))
    assert e.value.param == "harmonize" and str(pitch) in str(e.value)


def test_batched_rows_of_different_lengths_keep_the_whole_melody(roll):
  """Requests harmonizing one melody with different lengths share a compiled call; each keeps the
  melody on top for its own length (the melody's forced keys are not cut to the first row's)."""
  from artjax.inference import Request

  melody = [72, 74, 76, 77, 79, 77, 76, 74] * 4
  data = midi_bytes(melody, SPQ)
  short, long = roll.run([Request(1, 0, roll.check({"harmonize": data, "frames": 6})),
                          Request(1, 1, roll.check({"harmonize": data, "frames": 30}))])
  assert roll.batch_key(roll.check({"harmonize": data, "frames": 6})) == \
      roll.batch_key(roll.check({"harmonize": data, "frames": 30}))
  assert len(short.items[0].notes) == 6 and len(long.items[0].notes) == 30
  assert_melody_on_top(long.items[0].notes, melody[:30])


def test_a_tiny_midi_file_with_a_huge_note_is_refused_before_allocating(roll, coconet):
  """A note lasting millions of steps in a few hundred bytes: an OptionError, not a MemoryError."""
  pm = pretty_midi.PrettyMIDI(resolution=1, initial_tempo=120.0)
  inst = pretty_midi.Instrument(0)
  inst.notes = [pretty_midi.Note(80, 72, 0.0, 4.0e6)]
  pm.instruments.append(inst)
  buf = io.BytesIO()
  pm.write(buf)
  assert len(buf.getvalue()) < 1000
  for sampler, option in ((roll, "prime"), (roll, "harmonize"), (coconet, "harmonize")):
    with pytest.raises(OptionError) as e:
      sampler.resolve(sampler.check({option: buf.getvalue()}))
    assert e.value.param == option and "at most" in str(e.value)


def test_coconet_lengths_and_iterations_share_compiled_programs(coconet):
  """Grids pad to a power-of-two length and Gibbs iterations are per row: one program for all these."""
  before = coconet.traces
  for frames, gibbs in ((9, 3), (12, 4), (16, 5)):
    coconet.sample(2, 0, frames=frames, gibbs_steps=gibbs)
  assert coconet.traces - before <= 1


# --- 7. the server ----------------------------------------------------------------------------------

def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
  """A live `python -m artjax.serve` with the TCN run as `m` (and a Coconet run as `c` when JSB is here)."""
  httpx = pytest.importorskip("httpx")
  models = ["--model", f"m={runs('tcn')[0]}"]
  if (JSB / "Jsb16thSeparated.json").is_file():
    models += ["--model", f"c={runs('coconet')[0]}"]
  port = _free_port()
  log = tmp_path_factory.mktemp("server") / "server.log"
  with open(log, "w") as out:
    proc = subprocess.Popen([sys.executable, "-m", "artjax.serve", "--no-keys", "--host", "127.0.0.1", "--port",
                             str(port), "--warmup-sizes", "1", *models], cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT)
  base = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + 180
    while True:
      if proc.poll() is not None:
        raise AssertionError(f"server exited {proc.returncode}: {log.read_text()[-3000:]}")
      try:
        if httpx.get(base + "/readyz", timeout=2).status_code == 200:
          break
      except httpx.HTTPError:
        pass
      if time.monotonic() > deadline:
        raise AssertionError(f"server not ready within 180 s: {log.read_text()[-3000:]}")
      time.sleep(0.3)
    yield base
  finally:
    if proc.poll() is None:
      proc.terminate()
      try:
        proc.wait(30)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _post(base, body, path="/v1/audio/music"):
  import httpx

  return httpx.post(base + path, json=body, timeout=120)


@pytest.mark.slow
def test_server_harmonizes_melodies_into_midi_and_wav(server, roll):
  import httpx

  listed = {m["id"]: m["artjax"] for m in httpx.get(server + "/v1/models", timeout=30).json()["data"]}
  assert "m" in listed and all(card["output_kind"] == "music" for card in listed.values())
  assert {"harmonize", "prime", "bars", "bpm"} <= {o["name"] for o in listed["m"]["options"]}
  if "c" in listed:
    assert listed["c"]["family"] == "coconet"

  b64 = lambda data: base64.b64encode(data).decode("ascii")  # noqa: E731
  r = _post(server, {"model": "m", "n": 2, "seed": 3, "options": {"harmonize": b64(midi_bytes(MELODY, SPQ))},
                     "response_formats": ["mid", "wav"]})
  assert r.status_code == 200, r.text
  body = r.json()
  assert len(body["data"]) == 2
  want = roll.sample(2, seed=3, harmonize=midi_bytes(MELODY, SPQ)).items  # the server samples the same
  for entry, piece in zip(body["data"], want):
    files = entry["files"]
    assert files["mid"]["media_type"] == "audio/midi" and files["wav"]["media_type"] == "audio/wav"
    got = midi_to_roll(base64.b64decode(files["mid"]["b64"]), SPQ)
    assert_melody_on_top(got, MELODY)
    np.testing.assert_array_equal(got, piece.notes[:len(got)])
    audio = _wav(base64.b64decode(files["wav"]["b64"]))
    assert len(audio) == round(len(MELODY) * 60.0 / (80.0 * SPQ) * SAMPLE_RATE)
    assert np.sqrt(np.mean(audio ** 2)) > 0.02

  if "c" in listed:  # Coconet: the soprano part of the file is the melody, step for step
    r = _post(server, {"model": "c", "n": 1, "seed": 0, "options": {"harmonize": b64(midi_bytes(MELODY, 4)),
                                                                    "gibbs_steps": 2},
                       "response_formats": ["mid", "wav"]})
    assert r.status_code == 200, r.text
    files = r.json()["data"][0]["files"]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(base64.b64decode(files["mid"]["b64"])))
    assert [i.name for i in pm.instruments] == ["Soprano", "Alto", "Tenor", "Bass"]
    np.testing.assert_array_equal(melody_from_midi(pm, 4, instrument=0)[:len(MELODY)], MELODY)
    assert len(_wav(base64.b64decode(files["wav"]["b64"]))) == round(len(MELODY) * 60.0 / (80.0 * 4) * SAMPLE_RATE)

  # the generic endpoint serves the same model (one MIDI per sample by default)
  r = _post(server, {"model": "m", "seed": 1, "options": {"frames": 4}}, path="/v1/samples")
  assert r.status_code == 200 and r.json()["data"][0]["media_type"] == "audio/midi"


@pytest.mark.slow
def test_server_bad_music_options_are_400s_naming_the_param(server):
  cases = [({"harmonize": base64.b64encode(b"not a MIDI file").decode()}, "harmonize"),
           ({"harmonize": "%%% not base64 %%%"}, "harmonize"),
           ({"prime": base64.b64encode(b"MThd broken").decode()}, "prime"),
           ({"frames": 4, "bars": 1}, "bars"),
           ({"frames": 100000}, "frames"),
           ({"frames": 1024, "bpm": 20}, "seconds"),  # 1024 eighths at 20 bpm: 1536 s > the server's 300
           ({"temperature": "hot"}, "temperature")]
  for options, param in cases:
    r = _post(server, {"model": "m", "options": options})
    assert r.status_code == 400, (options, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param, (options, err)
    assert err["type"] == "invalid_request_error"
  for formats in (["mid", "gif"], ["wav", "wav"]):
    r = _post(server, {"model": "m", "response_formats": formats})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_formats", formats
  r = _post(server, {"model": "nope"})
  assert r.status_code == 404 and r.json()["error"]["param"] == "model"


# --- 8. training step and checkpoint round trip per :smoke config -----------------------------------

@pytest.mark.parametrize("name", ["tcn", pytest.param("lstm", marks=pytest.mark.slow),
                                  pytest.param("transformer", marks=pytest.mark.slow), "coconet"])
def test_smoke_config_trains_and_restores(name, runs):
  workdir, params = runs(name)
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [r["loss"] for r in rows if "loss" in r]
  assert [r["step"] for r in rows if "loss" in r] == [1, 2] and all(np.isfinite(losses))
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2"]
  sampler = Sampler.from_workdir(workdir)
  assert sampler.step == 2 and sampler.output_kind == "music"
  flat, tree = jax.tree.flatten(params)
  restored, restored_tree = jax.tree.flatten(host(sampler.params))
  assert tree == restored_tree
  for a, b in zip(flat, restored):
    np.testing.assert_array_equal(a, b)
  data = sampler.config.data
  if name == "coconet":
    # an untrained net spreads its mass over the 46 pitches and the rest
    assert losses[0] == pytest.approx(math.log(data.num_pitches + 1), rel=0.1)
    assert (data.low_pitch, data.num_pitches, data.steps_per_quarter) == (36, 46, 4)
  else:
    assert losses[0] == pytest.approx(KEYS * LN2, rel=0.1)  # p near 1/2 for every key at first
    assert (data.name, data.steps_per_quarter, data.num_keys) == ("midi_folder", SPQ, KEYS)
  if name in ("lstm", "transformer"):  # the TCN and Coconet runs are sampled by the tests above
    [piece] = sampler.sample(1, seed=0).items  # method.sample_frames = 8, through the model's cache
    assert piece.notes.shape == (8, KEYS) and piece.steps_per_quarter == SPQ and piece.notes.any()
