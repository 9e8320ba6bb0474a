"""Autoregressive language models (LSTM, Transformer): next-token cross-entropy and GPT-style sampling.

Sampling runs the shared decode core (`methods.decoding`: one compiled `lax.while_loop` over new tokens,
a context window of `model.max_len` tokens whose oldest half is dropped when full, a KV cache or an
RNN's carry with `cache=True`) with a categorical pick (temperature, top-k, top-p, an optional mask of
allowed tokens per position). Shapes depend only on (n, bucket(max_tokens)), so new prompts and
lengths do not recompile. Subclasses constrain decoding through `_constraint` (poetry forms:
`methods.poetry`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from artjax import models
from artjax import options as opts
from artjax.data.text import Tokenizer
from artjax.errors import ArtjaxError
from artjax.methods import METHODS
from artjax.methods.base import SingleLossMethod, gather_rows, pad_keys, prepare_once, row_keys
from artjax.methods.decoding import bucket, decode_loop, pick_categorical
from artjax.optim import make_optimizer


def token_nll(logits, targets):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


class Completion(str):
  """A generated text (a str) that also knows why it ended and how many tokens it took.

  finish_reason: 'stop' (end of text or a stop string) | 'length' (max_tokens reached);
  prompt_tokens / completion_tokens: token counts (the completion's up to the cut);
  continuation: the generated part alone (the text is the prompt, as output, followed by it).
  """

  finish_reason: str
  prompt_tokens: int
  completion_tokens: int
  continuation: str

  def __new__(cls, text, finish_reason="length", prompt_tokens=0, completion_tokens=0, continuation=None):
    self = super().__new__(cls, text)
    self.finish_reason, self.prompt_tokens, self.completion_tokens = finish_reason, prompt_tokens, completion_tokens
    self.continuation = text if continuation is None else continuation
    return self


@METHODS.register("autoregressive")
class AutoRegressive(SingleLossMethod):
  """Next-token prediction over `config.data` token sequences {"tokens": (B, T+1), "mask": (B, T)}.

  config.method: sample_tokens (length of the samples written during training), temperature.
  The tokenizer comes from config.data (its vocabulary is stored there by the trainer).
  """

  output_kind = "text"
  default_num_samples = 1
  train_samples = 4
  traceable_sample = False  # sample() does Python work (tokenizing, stop strings) around a jitted loop
  OPTIONS = (
      opts.Option("prompt", "str", "Text the samples continue (default: none, or a newline).", default=""),
      opts.Option("max_tokens", "int", "Tokens to generate per sample (default: method.sample_tokens, 256).",
                  minimum=1, limit="max_tokens", cost=True),
      opts.Option("temperature", "float", "Softmax temperature; 0 is greedy (default: method.temperature, 1).",
                  minimum=0.0),
      opts.Option("top_k", "int", "Sample among the k most likely tokens (0: all).", default=0, minimum=0),
      opts.Option("top_p", "float", "Nucleus sampling: the smallest set of tokens with this much probability "
                  "(1: all).", default=1.0, minimum=0.0, exclusive_minimum=True, maximum=1.0),
      opts.Option("stop", "strings", "Up to 4 strings; each sample is cut before the first one found (a single "
                  "string is one stop sequence).", default=(), max_items=4),
      opts.Option("cache", "bool", "KV-cache decoding (false: re-run the model over the window per token; "
                  "same tokens, slower).", default=True),
  )
  sample_options = tuple(o.name for o in OPTIONS)

  def __init__(self, config):
    self.config = config
    self.tokenizer = Tokenizer.from_config(config.data)
    if not self.tokenizer.vocab_size:
      raise ArtjaxError("config.data has no vocabulary: pass the config through artjax.data.prepare()")
    self.model = models.build(config.model, vocab_size=self.tokenizer.vocab_size)
    self.tx = make_optimizer(config.optimizer, config.total_steps)
    # Sample within the context the model was trained on (learned positions past it are untrained).
    self.window = min(int(config.model.get("max_len", config.data.seq_len)), int(config.data.seq_len))
    if self.window < 2:
      raise ArtjaxError(f"the sampling window (min of model.max_len and data.seq_len) must be >= 2, got {self.window}")
    # The config's sampling defaults obey the same checks as a request's options.
    defaults = self.check_options({"temperature": config.method.get("temperature", 1.0),
                                   "max_tokens": config.method.get("sample_tokens", 256)})
    self.default_temperature, self.default_max_tokens = defaults["temperature"], defaults["max_tokens"]
    self.traces = 0  # how often the decode loop was traced (= compiled): tests and the server watch it

    def loop(params, window, count, keys, max_new, temperature, top_k, top_p, eos_id, allowed, **static):
      self.traces += 1

      def pick(logits, step_keys, i):
        if allowed is not None:
          logits = jnp.where(allowed[i][None], logits, -jnp.inf)
        tok = pick_categorical(logits, step_keys, temperature, top_k, top_p)
        return tok, tok == eos_id

      return decode_loop(self.model, params, window, count, keys, max_new, pick, **static)

    self._loop = jax.jit(loop, static_argnames=("steps", "use_cache", "keep"))

  def init(self, rng, batch):
    variables = self.model.init({"params": rng}, batch["tokens"][:, :-1])
    return variables["params"], {}

  def loss(self, params, model_state, batch, rng):
    tokens, mask = batch["tokens"], batch["mask"]
    logits = self.model.apply({"params": params}, tokens[:, :-1], train=True, rngs={"dropout": rng})
    loss = jnp.sum(token_nll(logits, tokens[:, 1:]) * mask) / jnp.maximum(jnp.sum(mask), 1.0)
    return loss, (model_state, {"bits_per_token": loss / math.log(2)})

  def eval_sums(self, params, model_state, batch):
    """Sums over a batch (rows with batch['valid'] == 0 are padding) that `eval_summary` turns into metrics."""
    tokens, mask = batch["tokens"], batch["mask"] * batch["valid"][:, None]
    nll = token_nll(self.model.apply({"params": params}, tokens[:, :-1]), tokens[:, 1:])
    return {"nll": jnp.sum(nll * mask), "tokens": jnp.sum(mask)}

  def eval_summary(self, sums):
    """Loss in nats/token and bits per character (bits per byte for a byte tokenizer)."""
    loss = float(sums["nll"]) / max(float(sums["tokens"]), 1.0)
    unit = "bpb" if self.tokenizer.kind == "byte" else "bpc"
    return {"loss": loss, unit: loss / math.log(2), "tokens": float(sums["tokens"])}

  # --- sampling -------------------------------------------------------------------------------------

  def generate_tokens(self, params, rng, prompt_ids, num, max_tokens, temperature=1.0, top_k=0, top_p=1.0,
                      allowed=None, cache=True):
    """(num, max_tokens) int32 new tokens (-1 after eos) continuing `prompt_ids` (a non-empty int sequence).

    Row i is drawn with key fold_in(rng, i).
    """
    keys = row_keys(rng, num)
    rows = [dict(ids=list(prompt_ids), max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                 allowed=allowed, cache=cache)] * num
    return self._generate(params, keys, rows, num)[:, :max_tokens]

  def _generate(self, params, keys, rows, size):
    """(len(rows), bucket) new tokens for rows that share prompt length, constraint and cache setting."""
    first = rows[0]
    n, width = len(first["ids"]), self.window
    steps = bucket(max(r["max_tokens"] for r in rows))
    window = np.zeros((size, width), np.int32)
    for j, r in enumerate(rows):
      window[j, :n] = np.asarray(r["ids"], np.int32)[-width:]
    count = min(n, width)
    if count == 0:
      raise ArtjaxError("generation needs at least one context token")
    per_row = lambda name, dtype, pad: np.array([r[name] for r in rows] + [pad] * (size - len(rows)), dtype)  # noqa: E731
    allowed = first["allowed"]
    if allowed is not None:  # rows past the constraint allow only eos: the loop stops there
      pad = np.zeros((max(0, steps - len(allowed)), allowed.shape[1]), bool)
      if self.tokenizer.eos_id is not None:
        pad[:, self.tokenizer.eos_id] = True
      allowed = jnp.asarray(np.concatenate([allowed, pad])[:steps])
    keys = pad_keys(keys, size)
    eos = -1 if self.tokenizer.eos_id is None else self.tokenizer.eos_id
    out = self._loop(params, jnp.asarray(window), jnp.int32(count), keys, jnp.asarray(per_row("max_tokens", np.int32, 0)),
                     jnp.asarray(per_row("temperature", np.float32, 1.0)), jnp.asarray(per_row("top_k", np.int32, 0)),
                     jnp.asarray(per_row("top_p", np.float32, 1.0)), jnp.int32(eos), allowed,
                     steps=steps, use_cache=bool(first["cache"]), keep=max(1, width // 2))
    return gather_rows(out)[:len(rows)]

  def _prepare(self, options: dict) -> dict:
    """A row's settings from checked options: prompt ids, constraint, numbers with the config's defaults."""
    prompt = options.get("prompt", "")
    tok = self.tokenizer
    ids = list(tok.encode(self._prompt_text(prompt))) if prompt else []
    prompt_tokens = len(ids)
    max_tokens = options.get("max_tokens")
    allowed, constraint = self._constraint(options, ids)
    if allowed is not None:
      max_tokens = len(allowed)
    if tok.eos_id is not None:
      ids = [tok.eos_id] + ids  # document models were trained on <eos> poem <eos>
    elif not ids:  # unprompted: start after a newline, as nanoGPT does (or the first character)
      ids = [tok.token_strings().index("\n") if "\n" in tok.token_strings() else 0]
    return dict(ids=ids, prompt=prompt, prompt_tokens=prompt_tokens, allowed=allowed, constraint=constraint,
                max_tokens=self.default_max_tokens if max_tokens is None else max_tokens,
                temperature=options.get("temperature", self.default_temperature),
                top_k=options.get("top_k", 0), top_p=options.get("top_p", 1.0),
                stop=tuple(options.get("stop", ())), options=options, cache=options.get("cache", True))

  # --- hooks for constrained subclasses (methods.poetry) ---------------------------------------------

  def _prompt_text(self, prompt: str) -> str:
    """The prompt as the model reads it."""
    return prompt

  def _constraint(self, options: dict, prompt_ids: list) -> tuple:
    """(allowed (max_tokens, V) bool mask of the tokens each new position may take, or None; a hashable
    key naming the constraint, so rows with equal keys share a decode loop)."""
    del options, prompt_ids
    return None, None

  def _shown(self, row: dict, text: str) -> str:
    """Generated text as the reader gets it (a subclass may lay it out or convert it)."""
    del row
    return text

  def resolve_options(self, options: dict) -> dict:
    """Options with the effective max_tokens (a poem form's own length), temperature, top_k, top_p."""
    row = self._prepare(options)
    return {**options, **{k: row[k] for k in ("max_tokens", "temperature", "top_k", "top_p")}}

  def batch_key(self, options: dict):
    """Rows share a decode loop when their prompts have the same token length and the same poem
    constraint and cache setting (the loop's window count and mask are shared; sampling numbers and
    max_tokens are per row)."""
    row = self._prepare(options)
    return (len(row["ids"]), row["constraint"], row["cache"], bucket(row["max_tokens"]))

  def sample_rows(self, params, model_state, keys, rows: list[dict], size: int):
    """Completions for rows sharing one `batch_key`; row i draws its tokens from keys[i] only."""
    del model_state
    prepared = prepare_once(self._prepare, rows)  # tokenize and build form masks once per request
    out = self._generate(params, keys, prepared, size)
    return [self._finish(row, ids) for row, ids in zip(prepared, out)]

  def _finish(self, row, ids) -> Completion:
    tok = self.tokenizer
    new = [int(t) for t in ids[:row["max_tokens"]] if t >= 0]
    ended = bool(new) and tok.eos_id is not None and new[-1] == tok.eos_id
    raw = tok.decode(new)

    shown = lambda text: self._shown(row, text)  # noqa: E731
    prompt = shown(row["prompt"]) if row["prompt"] else ""
    full = shown(row["prompt"] + raw)
    cont = full[len(prompt):] if full.startswith(prompt) else shown(raw)
    # Stop strings apply to the text as returned (so "\n" also stops at a couplet's line break).
    cuts = [cont.find(s) for s in row["stop"] if s and s in cont]
    used = len(new)
    if cuts:
      cont = cont[:min(cuts)]
      # tokens up to the cut (a character tokenizer: one per character; bytes: the UTF-8 length)
      kept = cont.replace("\n", "") if row["allowed"] is not None else cont  # layout newlines are no tokens
      used = min(used, len(kept.encode("utf-8")) if tok.kind == "byte" else len(kept))
    reason = "stop" if cuts or ended or len(new) < row["max_tokens"] else "length"
    return Completion(prompt + cont, reason, row["prompt_tokens"], used, continuation=cont)

  def sample(self, params, model_state, rng, num, **options):
    """`num` texts (Completions): the prompt followed by its continuation, cut before the first stop string.

    Sample i is drawn with key fold_in(rng, i). Options: see OPTIONS (checked; a plain-string `stop`
    is one stop sequence).
    """
    options = self.check_options(options)
    return self.sample_rows(params, model_state, row_keys(rng, num), [options] * num, num)
