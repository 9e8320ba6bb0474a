"""Polyphonic music as piano-roll frames: next-frame prediction with 88 independent Bernoulli outputs.

The setting of Boulanger-Lewandowski et al. (2012) and Bai et al. (2018, section 5.3): a frame is the
set of the 88 piano keys sounding at one step; the model reads frames 0..t and gives 88 logits for
frame t+1; the loss is the Bernoulli negative log-likelihood summed over the keys. The reported metric
(`eval_sums`) is that NLL in nats per frame, averaged over every predicted frame of the split (targets
frames[1:] of each piece: the first frame of a piece is not scored), as the TCN paper reports it.
Any sequence model of the registry serves (model.input_size = 88): the LSTM, the Transformer, the TCN.

Every sequence is read after an all-zero start frame, so the model also learns how pieces begin and can
sample from nothing; the start frame's prediction (of frame 0) is trained but never reported.

Sampling runs the shared decode core (`methods.decoding`) with a Bernoulli pick: `frames` (or `bars`)
new frames at `temperature`; `prime` (a MIDI file) is continued (only the continuation is returned
unless `include_prime`); `harmonize` (a MIDI melody) is kept as the top voice note for note: at each
step its key is forced on and every key above it off, and the model writes the rest.
"""

import functools
import hashlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from artjax import models
from artjax import options as opts
from artjax.data.music import melody_from_midi, midi_to_roll
from artjax.encoders.music import KEYS, LOWEST_KEY, Piece
from artjax.errors import ArtjaxError
from artjax.methods import METHODS
from artjax.methods.base import SingleLossMethod, gather_rows, pad_keys, prepare_once, row_keys
from artjax.methods.decoding import bucket, decode_loop, pick_bernoulli
from artjax.optim import make_optimizer

# Sampling options of every music family (the Coconet method adds its own).
MUSIC_OPTIONS = (
    opts.Option("temperature", "float", "Sampling temperature; 0 takes the most likely outcome (default: "
                "method.temperature, 1).", minimum=0.0),
    opts.Option("frames", "int", "Steps to generate (default: method.sample_frames; with harmonize: the "
                "melody's length).", minimum=1, maximum=4096, limit="max_frames", cost=True),
    opts.Option("bars", "int", "Bars (4 quarter notes) to generate, instead of frames.", minimum=1, maximum=256),
    opts.Option("prime", "bytes", "A MIDI file to continue (the output starts where it ends; a server may take less than max_length).",
                max_length=1 << 20),
    opts.Option("include_prime", "bool", "Return the primer followed by its continuation.", default=False),
    opts.Option("harmonize", "bytes", "A MIDI melody kept as the soprano, note for note; the model writes "
                "the other voices.", max_length=1 << 20),
    opts.Option("bpm", "float", "Tempo of the output, quarter notes per minute (default: method.bpm, 80).",
                minimum=20.0, maximum=400.0),
)


def bernoulli_nll(logits, targets):
  """(..., K) logits and 0/1 targets -> (...) NLL in nats, summed over the K independent keys."""
  return jnp.sum(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets.astype(jnp.float32)),
                 axis=-1)


MAX_GIVEN_STEPS = 4096  # longest primer or melody a request may give (the longest output is 2x this)


@functools.lru_cache(maxsize=16)  # a request's file is read for its checks, its batch key and its batch
def read_midi(option: str, data: bytes, fn, steps_per_quarter: int):
  """fn(data, steps_per_quarter) from artjax.data.music (read-only result), with a bad, empty or too long
  file (over MAX_GIVEN_STEPS steps) reported as the option's OptionError."""
  try:
    out = fn(data, steps_per_quarter)
  except ArtjaxError as e:
    raise opts.OptionError(option, f"sampling option {option}: {e}") from None
  if not len(out):
    raise opts.OptionError(option, f"sampling option {option}: the MIDI file has no notes")
  out.flags.writeable = False
  return out


def melody_of(data: bytes, steps_per_quarter: int):
  """(T,) MIDI pitches (-1: rest) of a melody file: its highest note per step, over all its instruments."""
  return melody_from_midi(data, steps_per_quarter, instrument=None, strict=True, max_steps=MAX_GIVEN_STEPS)


def primer_roll(data: bytes, steps_per_quarter: int):
  """(T, 88) roll of a primer file; a note off the piano is an error, not dropped."""
  return midi_to_roll(data, steps_per_quarter, strict=True, max_steps=MAX_GIVEN_STEPS)


def num_steps(options: dict, steps_per_quarter: int, default: int, given: int | None = None) -> int:
  """Steps to generate from `frames` or `bars` (not both); `given`: the length a melody fixes."""
  frames, bars = options.get("frames"), options.get("bars")
  if frames is not None and bars is not None:
    raise opts.OptionError("bars", "sampling options frames and bars: give one of them, not both")
  n = frames if frames is not None else bars * 4 * steps_per_quarter if bars is not None else None
  if given is not None:
    return given if n is None else min(n, given)
  return default if n is None else n


def digest(data: bytes | None):
  return None if data is None else hashlib.sha256(data).hexdigest()[:16]


@METHODS.register("piano_roll")
class PianoRoll(SingleLossMethod):
  """Next-frame prediction over {"frames": uint8 (B, L+1, 88), "mask": (B, L)} (see module docstring).

  config.method: temperature, sample_frames, bpm (sampling defaults).
  config.data.steps_per_quarter: the grid (filled in by the music sources' prepare hook).
  """

  output_kind = "music"
  default_num_samples = 1
  train_samples = 4
  traceable_sample = False  # sample() reads MIDI files and builds Pieces around its compiled loop
  OPTIONS = MUSIC_OPTIONS
  sample_options = tuple(o.name for o in OPTIONS)

  def __init__(self, config):
    self.config = config
    self.model = models.build(config.model, vocab_size=KEYS, input_size=KEYS)
    self.tx = make_optimizer(config.optimizer, config.total_steps)
    self.steps_per_quarter = int(config.data.get("steps_per_quarter", 1))
    seq_len = int(config.data.get("seq_len", 0))
    # The start frame plus seq_len frames: what the model was trained on (learned positions stop there).
    self.window = min(int(config.model.get("max_len", seq_len + 1)), seq_len + 1)
    if self.window < 2:
      raise ArtjaxError(f"the sampling window (min of model.max_len and data.seq_len + 1) must be >= 2, "
                        f"got {self.window}")
    self.use_cache = hasattr(self.model, "decode")  # a TCN has none: it re-reads its window per frame
    defaults = self.check_options({"temperature": config.method.get("temperature", 1.0),
                                   "frames": config.method.get("sample_frames", 64),
                                   "bpm": config.method.get("bpm", 80.0)})
    self.default_temperature, self.default_frames = defaults["temperature"], defaults["frames"]
    self.default_bpm = defaults["bpm"]
    self.traces = 0

    def loop(params, window, count, keys, max_new, temperature, forced, **static):
      self.traces += 1

      def pick(logits, step_keys, i):
        on = pick_bernoulli(logits, step_keys, temperature)
        if forced is not None:  # -1: free, 0: off, 1: on (a melody kept as the top voice)
          on = jnp.where(forced[i][None] >= 0, forced[i][None] == 1, on)
        return on.astype(jnp.uint8), jnp.zeros(on.shape[:1], bool)

      return decode_loop(self.model, params, window, count, keys, max_new, pick, fill=0, **static)

    self._loop = jax.jit(loop, static_argnames=("steps", "use_cache", "keep", "pin"))

  # --- training and evaluation ------------------------------------------------------------------------

  def _inputs(self, frames):
    """(B, L+1, 88) frames -> the model's inputs: the start frame, then frames[:-1]."""
    frames = frames.astype(jnp.float32)
    return jnp.concatenate([jnp.zeros_like(frames[:, :1]), frames[:, :-1]], axis=1)

  def init(self, rng, batch):
    return self.model.init({"params": rng}, self._inputs(batch["frames"]))["params"], {}

  def loss(self, params, model_state, batch, rng):
    frames, mask = batch["frames"], batch["mask"]
    logits = self.model.apply({"params": params}, self._inputs(frames), train=True, rngs={"dropout": rng})
    nll = bernoulli_nll(logits, frames)
    weights = jnp.concatenate([mask[:, :1], mask], axis=1)  # the first frame too (after the start frame)
    loss = jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    # Not eval's metric: it also scores each window's first frame (eval_sums does not).
    return loss, (model_state, {"nll_per_frame": loss})

  def eval_sums(self, params, model_state, batch):
    """{"nll": summed nats of the scored frames (targets frames[1:] where mask and valid), "frames": count}."""
    frames = batch["frames"]
    mask = batch["mask"] * batch["valid"][:, None]
    nll = bernoulli_nll(self.model.apply({"params": params}, self._inputs(frames)), frames)[:, 1:]
    return {"nll": jnp.sum(nll * mask), "frames": jnp.sum(mask)}

  def eval_summary(self, sums):
    """NLL in nats per frame (Bai et al. 2018, Table 1's metric) and in bits per frame."""
    nll = float(sums["nll"]) / max(float(sums["frames"]), 1.0)
    return {"nll": nll, "bits_per_frame": nll / math.log(2), "frames": float(sums["frames"])}

  # --- sampling -----------------------------------------------------------------------------------

  def _prepare(self, options: dict) -> dict:
    """A row's settings from checked options: primer frames, forced keys, steps, temperature."""
    spq = self.steps_per_quarter
    primer = np.zeros((0, KEYS), np.uint8)
    if options.get("prime") is not None:
      primer = read_midi("prime", options["prime"], primer_roll, spq)
    forced = None
    if options.get("harmonize") is not None:
      melody = read_midi("harmonize", options["harmonize"], melody_of, spq)
      n = num_steps(options, spq, self.default_frames, given=len(melody))
      # The whole melody, whatever this row's length: rows that harmonize it share the array.
      forced = np.full((len(melody), KEYS), -1, np.int8)
      for t, p in enumerate(melody):
        if p >= 0:  # on the piano: melody_of refuses other pitches
          forced[t, p - LOWEST_KEY:] = 0
          forced[t, p - LOWEST_KEY] = 1
    else:
      n = num_steps(options, spq, self.default_frames)
    context = primer[-(self.window - 1):]
    include = options.get("include_prime", False)
    bpm = options.get("bpm", self.default_bpm)
    return dict(primer=primer, window=np.concatenate([np.zeros((1, KEYS), np.uint8), context]), forced=forced,
                steps=n, temperature=options.get("temperature", self.default_temperature), bpm=bpm,
                include_prime=include, key=digest(options.get("harmonize")),
                seconds=(n + (len(primer) if include else 0)) * 60.0 / (bpm * spq))

  def resolve_options(self, options: dict) -> dict:
    """Effective frames, temperature and bpm, and the output's length in seconds (what limits apply to)."""
    row = self._prepare(options)
    return {**options, "frames": row["steps"], "temperature": row["temperature"], "bpm": row["bpm"],
            "seconds": row["seconds"]}

  def batch_key(self, options: dict):
    """Rows share a decode loop when their primers fill the same window length, they harmonize the same
    melody (or none) and their lengths share a bucket."""
    row = self._prepare(options)
    return (len(row["window"]), row["key"], bucket(row["steps"]))

  def sample_rows(self, params, model_state, keys, rows: list[dict], size: int):
    """Pieces for rows sharing one `batch_key`; row i draws its frames from keys[i] only."""
    del model_state
    prepared = prepare_once(self._prepare, rows)
    first = prepared[0]
    steps = bucket(max(r["steps"] for r in prepared))
    window = np.zeros((size, self.window, KEYS), np.uint8)
    count = len(first["window"])
    for j, r in enumerate(prepared):
      window[j, :count] = r["window"]
    forced = None
    if first["forced"] is not None:
      forced = np.full((steps, KEYS), -1, np.int8)
      forced[:len(first["forced"])] = first["forced"][:steps]
      forced = jnp.asarray(forced)
    pad = size - len(rows)
    per_row = lambda name, dtype, fill: np.array([r[name] for r in prepared] + [fill] * pad, dtype)  # noqa: E731
    # The start frame stays first when the window slides: the model always saw it there.
    out = self._loop(params, jnp.asarray(window), jnp.int32(count), pad_keys(keys, size),
                     jnp.asarray(per_row("steps", np.int32, 0)), jnp.asarray(per_row("temperature", np.float32, 1.0)),
                     forced, steps=steps, use_cache=self.use_cache, keep=max(2, self.window // 2), pin=1)
    out = gather_rows(out)
    return [self._piece(r, out[j, :r["steps"]]) for j, r in enumerate(prepared)]

  def _piece(self, row, frames) -> Piece:
    primer = row["primer"] if row["include_prime"] else row["primer"][:0]
    return Piece(np.concatenate([primer, frames]), "roll", self.steps_per_quarter, row["bpm"], start=len(primer))

  def sample(self, params, model_state, rng, num, **options):
    """`num` Pieces; piece i is drawn with key fold_in(rng, i). Options: see OPTIONS."""
    options = self.check_options(options)
    return self.sample_rows(params, model_state, row_keys(rng, num), [options] * num, num)

