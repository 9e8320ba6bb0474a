"""Music: MIDI, WAV, piano-roll PNG and .npy, of one piece per sample (`Piece`).

A music method's `Samples.items` is a list of `Piece`s: a piano roll or a grid of voices on a grid of
steps (`steps_per_quarter` steps per quarter note, played at `bpm` quarter notes per minute). One step
lasts 60 / (bpm * steps_per_quarter) seconds, so N steps last N * 60 / (bpm * steps_per_quarter) s.

Whole-batch files (`encode(..., each=False)`, what `write` and the training loop make) put the samples
one after another, separated by one bar (4 quarter notes, at the preceding piece's tempo) of silence;
`each=True` (`encode_each`, the server) gives one file per sample. Every file carries its provenance:
MIDI as a text meta event at time 0, WAV in a RIFF LIST/INFO "ICMT" comment, PNG in the "artjax" text
chunk (all strict JSON, as UTF-8 bytes). The prompt and any melody or primer given by the user (the
"prime" and "harmonize" options, base64 MIDI) are left out unless `include_prompt=True`.
"""

import dataclasses
import functools
import io
import math
import struct

import numpy as np

from artjax.encoders import ENCODERS, Encoded, provenance, strict_json, unknown_format
from artjax.encoders.image import png
from artjax.errors import ArtjaxError
from artjax.utils import images

KEYS = 88  # piano keys, A0..C8: roll column k is MIDI pitch k + LOWEST_KEY
LOWEST_KEY = 21
REPRESENTATIONS = ("roll", "voices")
SATB = ("Soprano", "Alto", "Tenor", "Bass")
# General MIDI programs (0-based). Rolls are chorales and other polyphony with no voice parts: an organ
# sustains every note at an even level, as a binary roll means. Voices are sung (Bach's chorales): one
# choir sound for all four keeps the blend of a choir, and each voice still has its own instrument
# (channel) to mute or solo.
ROLL_PROGRAM = 19  # Church Organ
VOICE_PROGRAM = 52  # Choir Aahs
VELOCITY = 80
BAR_QUARTERS = 4  # the silence between samples in a whole-batch MIDI/WAV, and the PNG's bar lines
# Options holding a user's melody or primer (base64 MIDI): left out of provenance like the prompt.
GIVEN_MUSIC_OPTIONS = ("prime", "harmonize")

SAMPLE_RATE = 22050  # Hz, WAV output
PEAK = 0.9  # WAV peak after normalisation, as a fraction of full scale

PX_PER_STEP = 4  # PNG piano roll: pixels per step (x) and per semitone (y)
PX_PER_SEMITONE = 3
PITCH_MARGIN = 2  # semitones shown above and below the highest and lowest note
NOTE_COLOUR = (30, 30, 30)  # roll notes
VOICE_COLOURS = ((214, 39, 40), (255, 127, 14), (44, 160, 44), (31, 119, 180),  # S, A, T, B
                 (148, 103, 189), (140, 86, 75), (227, 119, 194), (23, 190, 207))
BACKGROUND = (252, 252, 252)
GIVEN_SHADE = (222, 228, 240)  # steps before `start`: the primer or melody the user gave
BAR_LINE = (205, 205, 205)
PAST_END = (170, 170, 170)  # a panel's steps after its piece ends (a shorter sample in a batch)
PANEL_PAD = 2  # px between panels, with the grid's pad value
PAD_VALUE = 120


@dataclasses.dataclass(frozen=True, eq=False)
class Piece:
  """One piece of music on a grid of steps: what music methods return (Samples.items is a list of them).

  notes: representation "roll": (T, 88) uint8 0/1 piano roll, column k = MIDI pitch k + 21 (A0..C8).
    Representation "voices": (T, V) int16 MIDI pitches (0..127), -1 for a rest; V = 4 is soprano, alto,
    tenor, bass. Given arrays are converted to these dtypes (bool or int rolls; int voices).
  steps_per_quarter: steps per quarter note (1: quarter-note steps, 4: 16ths).
  bpm: tempo in quarter notes per minute (> 0).
  programs: General MIDI program (0-based, 0..127) per voice, or one for a roll; None: Church Organ
    (19) for a roll, Choir Aahs (52) for every voice.
  start: the first step of generated material; steps before it are the primer or melody the user
    gave (shaded in the PNG). 0 <= start <= T.

  Raises ArtjaxError for a bad field (shape, dtype, values, range).
  """

  notes: np.ndarray
  representation: str
  steps_per_quarter: int
  bpm: float
  programs: tuple[int, ...] | None = None
  start: int = 0

  def __post_init__(self):
    if self.representation not in REPRESENTATIONS:
      raise ArtjaxError(f"unknown music representation {self.representation!r}; known: "
                        f"{', '.join(REPRESENTATIONS)}")
    notes = np.asarray(self.notes)
    roll = self.representation == "roll"
    if notes.ndim != 2 or (roll and notes.shape[1] != KEYS) or notes.shape[1] == 0:
      want = f"(T, {KEYS})" if roll else "(T, V) with V >= 1"
      raise ArtjaxError(f"a {self.representation} piece needs notes of shape {want}, got {notes.shape}")
    if notes.dtype != bool and not np.issubdtype(notes.dtype, np.integer):
      raise ArtjaxError(f"piece notes must be integers (or bool for a roll), got {notes.dtype}")
    lo, hi = (0, 1) if roll else (-1, 127)
    if notes.size and (notes.min() < lo or notes.max() > hi):
      raise ArtjaxError(f"{self.representation} notes must lie in {lo}..{hi}, got "
                        f"{notes.min()}..{notes.max()}")
    object.__setattr__(self, "notes", notes.astype(np.uint8 if roll else np.int16, copy=False))
    spq = self.steps_per_quarter
    if isinstance(spq, bool) or not isinstance(spq, (int, np.integer)) or spq < 1:
      raise ArtjaxError(f"steps_per_quarter must be a positive integer, got {spq!r}")
    object.__setattr__(self, "steps_per_quarter", int(spq))
    if isinstance(self.bpm, bool) or not isinstance(self.bpm, (int, float, np.number)) \
        or not math.isfinite(self.bpm) or self.bpm <= 0:
      raise ArtjaxError(f"bpm must be a positive finite number, got {self.bpm!r}")
    object.__setattr__(self, "bpm", float(self.bpm))
    num_parts = 1 if roll else notes.shape[1]
    programs = self.programs
    if programs is None:
      programs = (ROLL_PROGRAM if roll else VOICE_PROGRAM,) * num_parts
    programs = tuple(programs)
    if len(programs) != num_parts or not all(
        isinstance(p, (int, np.integer)) and not isinstance(p, bool) and 0 <= p <= 127 for p in programs):
      raise ArtjaxError(f"programs must be {num_parts} General MIDI program(s) in 0..127 "
                        f"(one per {'roll' if roll else 'voice'}), got {self.programs!r}")
    object.__setattr__(self, "programs", tuple(int(p) for p in programs))
    if isinstance(self.start, bool) or not isinstance(self.start, (int, np.integer)) \
        or not 0 <= self.start <= len(notes):
      raise ArtjaxError(f"start must be a step in 0..{len(notes)}, got {self.start!r}")
    object.__setattr__(self, "start", int(self.start))

  @property
  def num_steps(self) -> int:
    return len(self.notes)

  @property
  def step_seconds(self) -> float:
    """The length of one step in seconds: 60 / (bpm * steps_per_quarter)."""
    return 60.0 / (self.bpm * self.steps_per_quarter)

  @property
  def seconds(self) -> float:
    """The piece's length in seconds, trailing rests included: num_steps * step_seconds."""
    return self.num_steps * self.step_seconds

  def parts(self) -> list[tuple[str, int, np.ndarray]]:
    """(name, program, (T, 128) bool: pitch p sounds at step t) per instrument: one for a roll, one per
    voice (named Soprano, Alto, Tenor, Bass for 4 voices, else Voice 1, 2, ...)."""
    t = self.num_steps
    if self.representation == "roll":
      grid = np.zeros((t, 128), bool)
      grid[:, LOWEST_KEY:LOWEST_KEY + KEYS] = self.notes.astype(bool)
      return [("Piano roll", self.programs[0], grid)]
    num_voices = self.notes.shape[1]
    names = SATB if num_voices == len(SATB) else [f"Voice {v + 1}" for v in range(num_voices)]
    parts = []
    for name, program, pitches in zip(names, self.programs, self.notes.T):
      grid = np.zeros((t, 129), bool)
      grid[np.arange(t), pitches] = True  # a rest (-1) lands in column 128, dropped below
      parts.append((name, program, grid[:, :128]))
    return parts

  def to_roll(self) -> np.ndarray:
    """(T, 88) uint8 0/1 piano roll (column k = MIDI pitch k + 21); voices are merged (a unison is one
    key). Raises ArtjaxError for a voice pitch off the piano (21..108)."""
    if self.representation == "roll":
      return self.notes.copy()
    pitches = self.notes[self.notes >= 0]
    off = pitches[(pitches < LOWEST_KEY) | (pitches >= LOWEST_KEY + KEYS)]
    if off.size:
      raise ArtjaxError(f"pitch {off[0]} is off the piano ({LOWEST_KEY}..{LOWEST_KEY + KEYS - 1})")
    sounding = np.any([grid for _, _, grid in self.parts()], axis=0)
    return sounding[:, LOWEST_KEY:LOWEST_KEY + KEYS].astype(np.uint8)

  def to_midi(self):
    """This piece as a pretty_midi.PrettyMIDI (tempo `bpm`), by the rules of `midi`."""
    return midi([self])


def _check_pieces(samples) -> list[Piece]:
  pieces = list(samples.items)
  if not pieces:
    raise ArtjaxError("no music samples to encode")
  bad = next((p for p in pieces if not isinstance(p, Piece)), None)
  if bad is not None:
    raise ArtjaxError(f"music samples must be Pieces, got {type(bad).__name__}")
  return pieces


def _offsets(pieces: list[Piece]) -> tuple[list[float], float]:
  """Start time (s) of each piece played one after another with a bar of silence (at the preceding
  piece's tempo) between, and the total length (s): the last piece's end, with no trailing bar."""
  offsets, t = [], 0.0
  for piece in pieces:
    offsets.append(t)
    t += piece.seconds + BAR_QUARTERS * 60.0 / piece.bpm
  return offsets, offsets[-1] + pieces[-1].seconds


def midi(pieces: list[Piece], text: str | None = None):
  """A pretty_midi.PrettyMIDI of `pieces` one after another (a bar of silence between), `text` (e.g.
  provenance JSON) as a text meta event at time 0, stored as UTF-8 bytes.

  Rules: a roll is one instrument; a run of consecutive on-steps of one key is one note, so repeated
  notes of a key merge (a binary roll has no onsets). Voices are one instrument per voice (Soprano,
  Alto, Tenor, Bass for 4), and consecutive equal pitches in a voice are one held note. A step lasts
  60 / (bpm * steps_per_quarter) s; velocity is fixed (VELOCITY). The file's tempo is the first piece's
  bpm (a later piece at another tempo keeps its times in seconds). Pieces share the instrument of a
  part name (Soprano, ...; the first piece's program), so a batch of chorales has four instruments.
  """
  import pretty_midi

  # Ticks per quarter note that every piece's step divides exactly, so no note moves when written.
  resolution = math.lcm(480, *(p.steps_per_quarter for p in pieces))
  pm = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=pieces[0].bpm)
  instruments = {}  # part name -> Instrument, in order of first use
  offsets, _ = _offsets(pieces)
  for piece, offset in zip(pieces, offsets):
    for name, program, grid in piece.parts():
      if name not in instruments:
        instruments[name] = pretty_midi.Instrument(program, name=name)
      # Runs of True down each pitch column: +1 at a note's first step, -1 after its last.
      edges = np.diff(np.pad(grid.T.astype(np.int8), ((0, 0), (1, 1))), axis=1)
      pitches, starts = np.nonzero(edges == 1)
      _, ends = np.nonzero(edges == -1)  # row-major order pairs each end with its start
      step = piece.step_seconds
      instruments[name].notes.extend(
          pretty_midi.Note(VELOCITY, int(p), offset + s * step, offset + e * step)
          for p, s, e in zip(pitches, starts, ends))
  pm.instruments = list(instruments.values())
  for inst in pm.instruments:
    inst.notes.sort(key=lambda n: (n.start, n.pitch))
  if text is not None:
    # mido writes meta text as latin-1: give it the UTF-8 bytes (what readers expect) one per char.
    pm.text_events.append(pretty_midi.Text(text.encode("utf-8").decode("latin-1"), 0.0))
  return pm


def midi_text(pm) -> list[str]:
  """The text meta events of a PrettyMIDI read from a file, decoded from UTF-8 (the inverse of `midi`)."""
  return [e.text.encode("latin-1").decode("utf-8", errors="replace") for e in pm.text_events]


@functools.cache
def have_fluidsynth() -> bool:
  """Whether pretty_midi can render with FluidSynth: the `fluidsynth` module (pyfluidsynth) imports
  and loads libfluidsynth (it raises ImportError or OSError when the library is missing)."""
  try:
    import fluidsynth  # noqa: F401
  except (ImportError, OSError):
    return False
  from pretty_midi import fluidsynth as pm_fluidsynth

  return bool(getattr(pm_fluidsynth, "_HAS_FLUIDSYNTH", True))


def render(pieces: list[Piece], fs: int = SAMPLE_RATE) -> np.ndarray:
  """float64 (n,) mono audio in [-PEAK, PEAK] of `pieces` one after another (as `midi` places them).

  n = round(seconds * fs) exactly, where seconds is the sum of the pieces' lengths (trailing rests
  included) plus a bar of silence between pieces; a synthesizer's release after that is cut. Rendered
  with FluidSynth and pretty_midi's bundled General MIDI soundfont where `have_fluidsynth()`, else with
  pretty_midi's sine synthesis (programs ignored). The peak is scaled to PEAK; silence stays silent.
  """
  pm = midi(pieces)
  synthesize = pm.fluidsynth if have_fluidsynth() else pm.synthesize
  audio = synthesize(fs=fs, normalize=False)
  out = np.zeros(round(_offsets(pieces)[1] * fs))
  n = min(len(out), len(audio))
  out[:n] = audio[:n]
  peak = np.abs(out).max(initial=0.0)
  return out * (PEAK / peak) if peak > 0 else out


def _chunk(tag: bytes, data: bytes) -> bytes:
  return tag + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)  # RIFF pads to even


def wav_bytes(audio: np.ndarray, fs: int = SAMPLE_RATE, comment: str | None = None) -> bytes:
  """16-bit PCM mono WAV of float `audio` in [-1, 1] at `fs` Hz, with `comment` (UTF-8) in a RIFF
  LIST/INFO "ICMT" chunk before the data (the stdlib `wave` module cannot write one)."""
  pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
  chunks = _chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, fs, fs * 2, 2, 16))  # PCM, mono, 2 bytes/frame
  if comment is not None:
    chunks += _chunk(b"LIST", b"INFO" + _chunk(b"ICMT", comment.encode("utf-8") + b"\0"))
  return _chunk(b"RIFF", b"WAVE" + chunks + _chunk(b"data", pcm))


def roll_image(pieces: list[Piece]) -> np.ndarray:
  """uint8 (H, W, 3) piano-roll picture: one panel per piece, stacked top to bottom.

  Time runs left to right, PX_PER_STEP px per step; pitch bottom to top, PX_PER_SEMITONE px per
  semitone, over the pitches the pieces use plus PITCH_MARGIN semitones each side (the same range in
  every panel; middle C +- PITCH_MARGIN when nothing sounds). Notes are NOTE_COLOUR for a roll, one of
  VOICE_COLOURS per voice; steps before a piece's `start` (what the user gave) are shaded; light lines
  mark bars (BAR_QUARTERS quarters). With P pitches shown, longest piece T steps and N pieces:
  W = T * PX_PER_STEP + 2 * PANEL_PAD, H = N * (P * PX_PER_SEMITONE + PANEL_PAD) + PANEL_PAD.
  """
  parts = [piece.parts() for piece in pieces]
  used = np.flatnonzero(np.any([grid.any(axis=0) for ps in parts for _, _, grid in ps], axis=0))
  lo, hi = (used[0], used[-1]) if used.size else (60, 60)
  lo, hi = max(0, lo - PITCH_MARGIN), min(127, hi + PITCH_MARGIN)
  width = max(p.num_steps for p in pieces)
  panels = []
  for piece, piece_parts in zip(pieces, parts):
    cells = np.empty((hi - lo + 1, width, 3), np.uint8)  # one cell per (pitch, step), high pitch first
    cells[:] = BACKGROUND
    cells[:, :piece.start] = GIVEN_SHADE
    cells[:, piece.num_steps:] = PAST_END
    sounding = np.zeros(cells.shape[:2], bool)
    for v, (_, _, grid) in enumerate(piece_parts):
      on = np.zeros(cells.shape[:2], bool)
      on[:, :piece.num_steps] = grid[:, lo:hi + 1].T[::-1]
      cells[on] = NOTE_COLOUR if piece.representation == "roll" else VOICE_COLOURS[v % len(VOICE_COLOURS)]
      sounding |= on
    panel = np.repeat(np.repeat(cells, PX_PER_SEMITONE, axis=0), PX_PER_STEP, axis=1)
    sounding = np.repeat(np.repeat(sounding, PX_PER_SEMITONE, axis=0), PX_PER_STEP, axis=1)
    bar = BAR_QUARTERS * piece.steps_per_quarter
    for x in range(bar, piece.num_steps, bar):
      column = panel[:, x * PX_PER_STEP]
      column[~sounding[:, x * PX_PER_STEP]] = BAR_LINE  # under the notes
    panels.append(panel)
  return images.make_grid(np.stack(panels), ncol=1, pad=PANEL_PAD, pad_value=PAD_VALUE)


def npy_bytes(array: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.save(buf, array)
  return buf.getvalue()


def stack(pieces: list[Piece]) -> np.ndarray:
  """The pieces' notes as one array: rolls uint8 (N, T, 88) padded with 0 (silence), voices int16
  (N, T, V) padded with -1 (rests), T the longest piece. Raises ArtjaxError for pieces of different
  representations or numbers of voices."""
  shapes = {(p.representation, p.notes.shape[1]) for p in pieces}
  if len(shapes) > 1:
    raise ArtjaxError(f"cannot stack pieces of different kinds into one array: {sorted(shapes)}")
  first = pieces[0]
  out = np.full((len(pieces), max(p.num_steps for p in pieces), first.notes.shape[1]),
                0 if first.representation == "roll" else -1, first.notes.dtype)
  for i, piece in enumerate(pieces):
    out[i, :piece.num_steps] = piece.notes
  return out


class MusicEncoder:
  """Music (a list of `Piece`). Formats: mid (General MIDI file), wav (16-bit mono at SAMPLE_RATE Hz,
  see `render`), png (piano-roll picture, see `roll_image`), npy (notes: `stack` for a batch, a piece's
  own array for each). A batch is one file with the samples one after another (a bar of silence
  between; one panel each in the PNG); `each=True` gives one file per sample.
  """

  route = "/v1/audio/music"  # the server's endpoint for this kind (also /v1/samples)
  formats = {"mid": "audio/midi", "wav": "audio/wav", "png": "image/png", "npy": "application/x-npy"}
  suffixes = {".mid": "mid", ".midi": "mid", ".wav": "wav", ".png": "png", ".npy": "npy"}
  default = "mid"
  item_format = "mid"
  per_sample = True  # the formats are whole-batch files; encode_each passes each=True

  def encode(self, samples, fmt: str, include_prompt: bool = False, each: bool = False) -> list[Encoded]:
    if fmt not in self.formats:
      raise unknown_format(self, fmt)
    pieces = _check_pieces(samples)
    if each:
      return [self._encode([piece], fmt, _provenance(samples, include_prompt, index=i), each=True)
              for i, piece in enumerate(pieces)]
    return [self._encode(pieces, fmt, _provenance(samples, include_prompt), each=False)]

  def _encode(self, pieces: list[Piece], fmt: str, meta: dict, each: bool) -> Encoded:
    if fmt == "mid":
      buf = io.BytesIO()
      midi(pieces, strict_json(meta)).write(buf)
      data = buf.getvalue()
    elif fmt == "wav":
      data = wav_bytes(render(pieces), SAMPLE_RATE, strict_json(meta))
    elif fmt == "png":
      data = png(roll_image(pieces), meta, 1)
    else:  # npy
      data = npy_bytes(pieces[0].notes if each else stack(pieces))
    return Encoded(data, self.formats[fmt], f".{fmt}")


def _provenance(samples, include_prompt: bool, **extra) -> dict:
  prov = provenance(samples, include_prompt, **extra)
  if not include_prompt:
    for key in GIVEN_MUSIC_OPTIONS:
      prov["options"].pop(key, None)
  return prov


ENCODERS.register("music")(MusicEncoder())
