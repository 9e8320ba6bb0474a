"""Coconet (Huang et al. 2017, "Counterpoint by Convolution"): an orderless model of four-voice (SATB)
grids, trained to fill in random masks and sampled by blocked Gibbs sampling.

Training (paper section 4): for every example a fraction u ~ U(0, 1) is drawn and each (step, voice)
cell is hidden with probability u; the loss is the mean NLL (nats) of the hidden notes given the visible
ones (Uria et al. 2014's orderless NADE objective, one ordering position at a time).

Sampling (section 5): annealed blocked Gibbs (Yao et al. 1996): at iteration n a random block of cells,
each with probability p_n = max(p_min, p_max - n (p_max - p_min) / (eta N)), is hidden and redrawn from
the model at `temperature`. Cells the user gave are never redrawn: `harmonize` keeps a melody as the
soprano note for note and writes alto, tenor and bass; `prime` (a four-part MIDI, one instrument per
voice) keeps its steps and writes what follows. The first iteration hides every free cell.

Evaluation: `eval_sums` reports the masked-cell NLL (nats per hidden note at u ~ U(0, 1), fixed masks):
a cheap proxy for training curves. `ordered_nll` gives the exact NLL of a grid under an ordering of its
cells, chronological (step by step, soprano to bass) or random, as the paper's Table 1 reports it:
T x V passes of the network per grid, so a GPU job (tools/music_report.py).

Grids are padded to a power-of-two length with given rests, and the iteration count is a traced
per-row value, so requests of any length and any gibbs_steps share a few compiled programs.
"""

import jax
import jax.numpy as jnp
import numpy as np

from artjax import models
from artjax import options as opts
from artjax.data.music import melody_from_midi
from artjax.encoders.music import Piece
from artjax.errors import ArtjaxError
from artjax.methods import METHODS
from artjax.methods.base import SingleLossMethod, gather_rows, pad_keys, prepare_once, row_keys
from artjax.methods.decoding import bucket, pick_categorical
from artjax.methods.music import MAX_GIVEN_STEPS, MUSIC_OPTIONS, melody_of, num_steps, read_midi
from artjax.optim import make_optimizer

VOICES = 4


def _voice_parts(data: bytes, steps_per_quarter: int):
  """(T, 4) MIDI pitches (-1: rest) of a four-part MIDI file: the top note of instruments 0..3."""
  parts = [melody_from_midi(data, steps_per_quarter, instrument=i, strict=True, max_steps=MAX_GIVEN_STEPS)
           for i in range(VOICES)]
  return np.stack(parts, axis=1)


@METHODS.register("coconet")
class Coconet(SingleLossMethod):
  """Orderless infilling over {"voices": int32 (B, T, 4) classes, "mask": (B, T) real steps}.

  config.data: num_pitches, low_pitch (classes are pitch - low_pitch; num_pitches is the rest) and
  steps_per_quarter, filled in by the jsb_chorales source. config.method: gibbs_steps, p_max, p_min,
  eta (the annealing schedule), temperature, sample_frames, bpm.
  """

  output_kind = "music"
  default_num_samples = 1
  train_samples = 4
  traceable_sample = False
  OPTIONS = MUSIC_OPTIONS + (
      opts.Option("gibbs_steps", "int", "Blocked Gibbs iterations (default: method.gibbs_steps).",
                  minimum=1, maximum=4096, limit="max_steps"),
  )
  sample_options = tuple(o.name for o in OPTIONS)

  def __init__(self, config):
    self.config = config
    data = config.data
    if "num_pitches" not in data or "low_pitch" not in data:
      raise ArtjaxError("the coconet method needs config.data.num_pitches and low_pitch: a voices source "
                        "(jsb_chorales with representation='voices') fills them in")
    self.num_pitches, self.low_pitch = int(data.num_pitches), int(data.low_pitch)
    self.rest = self.num_pitches
    self.steps_per_quarter = int(data.get("steps_per_quarter", 4))
    self.model = models.build(config.model, num_classes=self.num_pitches + 1, num_voices=VOICES)
    self.tx = make_optimizer(config.optimizer, config.total_steps)
    mc = config.method
    self.p_max, self.p_min, self.eta = float(mc.get("p_max", 0.9)), float(mc.get("p_min", 0.05)), \
        float(mc.get("eta", 0.75))
    if not 0.0 < self.p_min <= self.p_max <= 1.0 or not self.eta > 0:
      raise ArtjaxError(f"method.p_min/p_max/eta must satisfy 0 < p_min <= p_max <= 1 and eta > 0, got "
                        f"{self.p_min}, {self.p_max}, {self.eta}")
    defaults = self.check_options({"temperature": mc.get("temperature", 1.0),
                                   "frames": mc.get("sample_frames", 64), "bpm": mc.get("bpm", 80.0),
                                   "gibbs_steps": mc.get("gibbs_steps", 128)})
    self.default_temperature, self.default_frames = defaults["temperature"], defaults["frames"]
    self.default_bpm, self.default_gibbs = defaults["bpm"], defaults["gibbs_steps"]
    self.traces = 0
    self._gibbs = jax.jit(self._gibbs_loop)

  # --- training and evaluation ------------------------------------------------------------------------

  def _logp(self, params, voices, hidden):
    """(B, T, V) log-probabilities of `voices` where `hidden`, from the visible cells."""
    logits = self.model.apply({"params": params}, voices, hidden)  # (B, T, C, V)
    logp = jax.nn.log_softmax(logits, axis=2)
    return jnp.take_along_axis(logp, voices[:, :, None, :], axis=2)[:, :, 0, :]

  def _random_mask(self, rng, real):
    """Hidden cells (B, T, V): each with probability u ~ U(0, 1) per example, only on real steps."""
    u_rng, m_rng = jax.random.split(rng)
    u = jax.random.uniform(u_rng, (real.shape[0], 1, 1))
    return jax.random.bernoulli(m_rng, u, real.shape + (VOICES,)) & real[:, :, None]

  def init(self, rng, batch):
    voices = batch["voices"]
    return self.model.init({"params": rng}, voices, jnp.ones(voices.shape, bool))["params"], {}

  def _masked_nll(self, params, batch, rng, weights):
    """Per-example mean NLL of the hidden notes (B,), and each example's count of hidden notes (B,)."""
    voices, real = batch["voices"], batch["mask"] > 0
    hidden = self._random_mask(rng, real)
    nll = -self._logp(params, voices, hidden) * hidden
    count = jnp.sum(hidden, axis=(1, 2)) * weights
    return jnp.sum(nll, axis=(1, 2)) / jnp.maximum(count, 1.0) * (count > 0), count

  def loss(self, params, model_state, batch, rng):
    per_example, count = self._masked_nll(params, batch, rng, jnp.ones(batch["voices"].shape[:1]))
    loss = jnp.sum(per_example) / jnp.maximum(jnp.sum(count > 0), 1.0)
    return loss, (model_state, {"masked_nll": loss})

  def eval_sums(self, params, model_state, batch):
    """Masked-cell NLL with fixed masks (the same for every evaluation): nats summed, notes counted."""
    voices, real = batch["voices"], (batch["mask"] > 0) & (batch["valid"][:, None] > 0)
    hidden = self._random_mask(jax.random.key(0), real)
    nll = -self._logp(params, voices, hidden) * hidden
    return {"nll": jnp.sum(nll), "notes": jnp.sum(hidden)}

  def eval_summary(self, sums):
    """Nats per hidden note (masks at u ~ U(0, 1)); not the ordered NLL of the paper's Table 1."""
    return {"masked_nll": float(sums["nll"]) / max(float(sums["notes"]), 1.0), "notes": float(sums["notes"])}

  def ordered_nll(self, params, voices, mask, order: str = "chronological", rng=None):
    """Exact NLL (B,) in nats of each grid under an ordering of its cells (Huang et al. 2017, Table 1).

    voices (B, T, 4) int classes; mask (B, T) real steps (padding is visible and not scored).
    order 'chronological': step by step, soprano to bass within a step; 'random': one random order per
    grid from `rng`. Cell j is predicted with every cell before it in the order visible: T x 4 passes.
    Divide by the number of real steps for nats per frame (one frame = the 4 voices of a step).
    """
    b, t, v = voices.shape
    real = mask > 0
    if order == "chronological":
      rank = jnp.broadcast_to(jnp.arange(t * v).reshape(t, v), (b, t, v))
    elif order == "random":
      if rng is None:
        raise ArtjaxError("ordered_nll(order='random') needs rng")
      rank = jax.vmap(lambda k: jax.random.permutation(k, t * v).reshape(t, v))(jax.random.split(rng, b))
    else:
      raise ArtjaxError(f"order must be 'chronological' or 'random', not {order!r}")

    def step(total, j):
      hidden = (rank >= j) & real[:, :, None]
      logp = self._logp(params, voices, hidden)
      return total - jnp.sum(jnp.where((rank == j) & real[:, :, None], logp, 0.0), axis=(1, 2)), None

    return jax.lax.scan(step, jnp.zeros((b,), jnp.float32), jnp.arange(t * v))[0]

  # --- sampling -----------------------------------------------------------------------------------

  def _gibbs_loop(self, params, voices, given, keys, temperature, iterations):
    """Annealed blocked Gibbs over (B, T, 4) classes; cells where `given` stay as they are.

    temperature, iterations: (B,) per row; row b's schedule runs over iterations[b] and it is left
    alone after that (the loop runs to the largest).
    """
    self.traces += 1
    b, t, v = voices.shape
    free = ~given
    flat_t = jnp.repeat(temperature, t * v)
    total = iterations.astype(jnp.float32)[:, None, None]

    def redraw(x, block, keys):
      logits = self.model.apply({"params": params}, x, block)  # (B, T, C, V)
      flat = jnp.moveaxis(logits, 2, -1).reshape(b * t * v, -1)
      cell_keys = jax.vmap(lambda k: jax.random.split(k, t * v))(keys).reshape(-1)
      drawn = pick_categorical(flat, cell_keys, flat_t, jnp.zeros_like(flat_t, jnp.int32),
                               jnp.ones_like(flat_t)).reshape(b, t, v)
      return jnp.where(block, drawn, x)

    def body(n, x):
      step_keys = jax.vmap(lambda k: jax.random.fold_in(k, n + 1))(keys)
      mask_keys, draw_keys = jax.vmap(jax.random.split, out_axes=1)(step_keys)
      p = jnp.maximum(self.p_min, self.p_max - n * (self.p_max - self.p_min) / (self.eta * total))
      block = jax.vmap(lambda k, pb: jax.random.bernoulli(k, pb, (t, v)))(mask_keys, p[:, 0, 0])
      block = block & free & (n + 1 < total)
      return redraw(x, block, draw_keys)

    x = redraw(voices, free, jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys))
    return jax.lax.fori_loop(0, jnp.max(iterations) - 1, body, x)

  def _classes(self, option: str, pitches: np.ndarray) -> np.ndarray:
    """MIDI pitches (-1: rest) -> classes, OptionError naming `option` for a pitch off the grid."""
    off = (pitches >= 0) & ((pitches < self.low_pitch) | (pitches >= self.low_pitch + self.num_pitches))
    if off.any():
      raise opts.OptionError(option, f"sampling option {option}: pitch {int(pitches[off][0])} is outside the "
                             f"model's range {self.low_pitch}..{self.low_pitch + self.num_pitches - 1}")
    return np.where(pitches < 0, self.rest, pitches - self.low_pitch).astype(np.int32)

  def _prepare(self, options: dict) -> dict:
    spq = self.steps_per_quarter
    primer = np.zeros((0, VOICES), np.int32)
    if options.get("prime") is not None:
      primer = self._classes("prime", read_midi("prime", options["prime"], _voice_parts, spq))
    if options.get("harmonize") is not None:
      melody = self._classes("harmonize", read_midi("harmonize", options["harmonize"], melody_of, spq))
      n = num_steps(options, spq, self.default_frames, given=len(melody))
      grid = np.full((n, VOICES), self.rest, np.int32)
      given = np.zeros((n, VOICES), bool)
      grid[:, 0], given[:, 0] = melody[:n], True
    else:
      n = num_steps(options, spq, self.default_frames)
      grid, given = np.full((n, VOICES), self.rest, np.int32), np.zeros((n, VOICES), bool)
    grid = np.concatenate([primer, grid])
    given = np.concatenate([np.ones(primer.shape, bool), given])
    include, bpm = options.get("include_prime", False), options.get("bpm", self.default_bpm)
    out_steps = len(grid) if include else len(grid) - len(primer)
    return dict(grid=grid, given=given, primer_len=len(primer), include_prime=include,
                temperature=options.get("temperature", self.default_temperature), bpm=bpm,
                gibbs=options.get("gibbs_steps", self.default_gibbs), seconds=out_steps * 60.0 / (bpm * spq))

  def resolve_options(self, options: dict) -> dict:
    """Effective frames, temperature, bpm and iterations, and the output's length in seconds."""
    row = self._prepare(options)
    return {**options, "frames": len(row["grid"]) - row["primer_len"], "temperature": row["temperature"],
            "bpm": row["bpm"], "gibbs_steps": row["gibbs"], "seconds": row["seconds"]}

  def batch_key(self, options: dict):
    """Rows share a compiled sampler when their grids fall in the same power-of-two length (given cells,
    temperature and iterations are per row)."""
    return bucket(len(self._prepare(options)["grid"]), 16)

  def sample_rows(self, params, model_state, keys, rows: list[dict], size: int):
    del model_state
    prepared = prepare_once(self._prepare, rows)
    length = bucket(max(len(r["grid"]) for r in prepared), 16)
    grid = np.full((size, length, VOICES), self.rest, np.int32)
    given = np.ones((size, length, VOICES), bool)  # padding: given rests, never redrawn
    for j, r in enumerate(prepared):
      grid[j, :len(r["grid"])], given[j, :len(r["grid"])] = r["grid"], r["given"]
    pad = size - len(rows)
    temperature = np.array([r["temperature"] for r in prepared] + [1.0] * pad, np.float32)
    iterations = np.array([r["gibbs"] for r in prepared] + [1] * pad, np.int32)
    out = self._gibbs(params, jnp.asarray(grid), jnp.asarray(given), pad_keys(keys, size), jnp.asarray(temperature),
                      jnp.asarray(iterations))
    out = gather_rows(out)
    return [self._piece(r, out[j, :len(r["grid"])]) for j, r in enumerate(prepared)]

  def _piece(self, row, classes) -> Piece:
    start = 0 if row["include_prime"] else row["primer_len"]
    pitches = np.where(classes == self.rest, -1, classes + self.low_pitch)[start:]
    return Piece(pitches, "voices", self.steps_per_quarter, row["bpm"],
                 start=row["primer_len"] if row["include_prime"] else 0)

  def sample(self, params, model_state, rng, num, **options):
    """`num` Pieces (SATB voices); piece i is drawn with key fold_in(rng, i). Options: see OPTIONS."""
    options = self.check_options(options)
    return self.sample_rows(params, model_state, row_keys(rng, num), [options] * num, num)
