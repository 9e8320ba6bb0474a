"""Autoregressive language models (LSTM, Transformer): next-token cross-entropy and GPT-style sampling.

Sampling runs one compiled `lax.while_loop` over new tokens (no Python loop over tokens). The context
lives in a fixed window of `model.max_len` tokens: the prompt is placed in it, each new token is appended,
and when the window is full the oldest half is dropped and the rest re-encoded (nanoGPT crops the
context the same way, one token at a time). With `cache=True` the Transformer appends keys/values to a KV
cache (an RNN keeps its carry) and computes one position per token; `cache=False` re-runs the model over
the window for every token. Both follow the same window rule, so they produce the same tokens. Shapes
depend only on (n, bucket(max_tokens)), so new prompts and lengths do not recompile.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from artjax import models
from artjax.data import poetry
from artjax.data.text import Tokenizer, convert_script
from artjax.errors import ArtjaxError
from artjax.methods import METHODS
from artjax.methods.base import SingleLossMethod
from artjax.optim import make_optimizer


def token_nll(logits, targets):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def filter_logits(logits, temperature, top_k, top_p):
  """Temperature, then top-k (0: off), then nucleus top-p (1: off) on (B, V) logits; filtered ones become -inf.

  Ties with the k-th logit are kept (so top_k=1 may keep several exactly equal maxima).
  """
  logits = logits / jnp.maximum(temperature, 1e-6)
  desc = -jnp.sort(-logits, axis=-1)
  kth = jax.lax.dynamic_index_in_dim(desc, jnp.clip(top_k - 1, 0, logits.shape[-1] - 1), axis=1)
  logits = jnp.where((top_k > 0) & (logits < kth), -jnp.inf, logits)
  desc = -jnp.sort(-logits, axis=-1)
  probs = jax.nn.softmax(desc, axis=-1)
  # Keep the smallest prefix whose mass reaches top_p: tokens whose preceding mass is still < top_p.
  keep = jnp.sum((jnp.cumsum(probs, axis=-1) - probs) < top_p, axis=-1, keepdims=True)
  cutoff = jnp.take_along_axis(desc, jnp.maximum(keep - 1, 0), axis=-1)
  # top_p = 1 must keep everything: the float32 running sum can reach 1 before the tail does.
  return jnp.where((top_p < 1.0) & (logits < cutoff), -jnp.inf, logits)


def pick_tokens(logits, rng, temperature, top_k, top_p):
  """Sampled tokens (B,), or the argmax when temperature == 0."""
  # The two sorts of filter_logits are skipped per token when neither top-k nor top-p is on.
  filtered = jax.lax.cond((top_k > 0) | (top_p < 1.0), lambda l: filter_logits(l, temperature, top_k, top_p),
                          lambda l: l / jnp.maximum(temperature, 1e-6), logits)
  sampled = jax.random.categorical(rng, filtered, axis=-1)
  return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def decode_loop(model, params, window, count, rng, max_new, temperature, top_k, top_p, eos_id, allowed,
                *, steps: int, use_cache: bool, keep: int):
  """Generates up to `max_new` (<= steps) tokens after the first `count` tokens of `window` (B, W).

  `allowed` (steps, V) bool masks the logits of each new token (or None). Returns (B, steps) int32 tokens,
  -1 after the end (eos or max_new). Every argument except the keywords may change without recompiling.
  """
  b, w = window.shape
  variables = {"params": params}
  take = lambda logits, i: jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False)

  def encode_window(win, n):  # logits for the token after win[:, :n], and the cache of the window
    if use_cache:
      logits, cache = model.apply(variables, win, model.init_cache(b, w), 0, n, method="decode")
    else:
      logits, cache = model.apply(variables, win), None
    return take(logits, n - 1), cache

  def body(carry):
    i, win, n, cache, logits, out, done = carry
    if allowed is not None:
      logits = jnp.where(allowed[i][None], logits, -jnp.inf)
    tok = pick_tokens(logits, jax.random.fold_in(rng, i), temperature, top_k, top_p)
    out = out.at[:, i].set(jnp.where(done, -1, tok))
    done = done | (tok == eos_id)
    full = n == w
    win = jnp.where(full, jnp.roll(win, keep - w, axis=1), win)  # drop the oldest w - keep tokens
    n = jnp.where(full, keep, n)
    win = jax.lax.dynamic_update_slice(win, tok[:, None], (0, n))
    n = n + 1
    if use_cache:
      def step(_):
        step_logits, new_cache = model.apply(variables, tok[:, None], cache, n - 1, method="decode")
        return step_logits[:, 0], new_cache
      logits, cache = jax.lax.cond(full, lambda _: encode_window(win, n), step, None)
    else:
      logits = take(model.apply(variables, win), n - 1)
    return i + 1, win, n, cache, logits, out, done

  def cond(carry):
    i, done = carry[0], carry[-1]
    return (i < max_new) & ~jnp.all(done)

  logits, cache = encode_window(window, count)
  init = (jnp.int32(0), window, jnp.asarray(count, jnp.int32), cache, logits,
          jnp.full((b, steps), -1, jnp.int32), jnp.zeros((b,), bool))
  return jax.lax.while_loop(cond, body, init)[5]


def bucket(n: int, minimum: int = 64) -> int:
  """Next power of two >= n (at least `minimum`): the padded length a compiled sampler is built for."""
  return max(minimum, 1 << max(0, int(n) - 1).bit_length())


@METHODS.register("autoregressive")
class AutoRegressive(SingleLossMethod):
  """Next-token prediction over `config.data` token sequences {"tokens": (B, T+1), "mask": (B, T)}.

  config.method: sample_tokens (length of the samples written during training), temperature.
  The tokenizer comes from config.data (its vocabulary is stored there by the trainer).
  """

  output_kind = "text"
  traceable_sample = False  # sample() does Python work (tokenizing, stop strings) around a jitted loop
  sample_options = ("prompt", "max_tokens", "temperature", "top_k", "top_p", "stop", "form", "acrostic",
                    "script", "cache")

  def __init__(self, config):
    self.config = config
    self.tokenizer = Tokenizer.from_config(config.data)
    if not self.tokenizer.vocab_size:
      raise ArtjaxError("config.data has no vocabulary: pass the config through artjax.data.text.resolve()")
    self.model = models.build(config.model, vocab_size=self.tokenizer.vocab_size)
    self.tx = make_optimizer(config.optimizer, config.total_steps)
    # Sample within the context the model was trained on (learned positions past it are untrained).
    self.window = min(int(config.model.get("max_len", config.data.seq_len)), int(config.data.seq_len))
    if self.window < 2:
      raise ArtjaxError(f"the sampling window (min of model.max_len and data.seq_len) must be >= 2, got {self.window}")
    self._loop = jax.jit(functools.partial(decode_loop, self.model), static_argnames=("steps", "use_cache", "keep"))

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
    """(num, max_tokens) int32 new tokens (-1 after eos) continuing `prompt_ids` (a non-empty int sequence)."""
    prompt_ids = np.asarray(prompt_ids, np.int32)[-self.window:]
    if prompt_ids.size == 0:
      raise ArtjaxError("generation needs at least one context token")
    steps = bucket(max_tokens)
    window = np.zeros((num, self.window), np.int32)
    window[:, :len(prompt_ids)] = prompt_ids
    if allowed is not None:  # rows past the constraint allow only eos: the loop stops there
      pad = np.zeros((steps - len(allowed), allowed.shape[1]), bool)
      if self.tokenizer.eos_id is not None:
        pad[:, self.tokenizer.eos_id] = True
      allowed = jnp.asarray(np.concatenate([allowed, pad])[:steps])
    eos = -1 if self.tokenizer.eos_id is None else self.tokenizer.eos_id
    out = self._loop(params, jnp.asarray(window), jnp.int32(len(prompt_ids)), rng, jnp.int32(max_tokens),
                     jnp.float32(temperature), jnp.int32(top_k), jnp.float32(top_p), jnp.int32(eos), allowed,
                     steps=steps, use_cache=bool(cache), keep=max(1, self.window // 2))
    if not out.is_fully_addressable:  # params spread over hosts: every process gets all rows
      from jax.experimental import multihost_utils
      out = multihost_utils.process_allgather(out, tiled=True)
    return np.asarray(out)[:, :max_tokens]

  def sample(self, params, model_state, rng, num, prompt="", max_tokens=None, temperature=None, top_k=0,
             top_p=1.0, stop=(), form="", acrostic="", script="", cache=True):
    """`num` texts: the prompt followed by its continuation (cut before the first stop string)."""
    mc = self.config.method
    temperature = mc.get("temperature", 1.0) if temperature is None else float(temperature)
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
      raise ArtjaxError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}")
    tok = self.tokenizer
    model_script = self.config.data.get("script", "")
    prompt_text = convert_script(prompt, model_script) if (prompt and model_script) else prompt
    ids = list(tok.encode(prompt_text)) if prompt_text else []
    allowed = None
    if form or acrostic:
      allowed, ids = self._form_constraint(form, acrostic, ids)
      max_tokens = len(allowed)
    if tok.eos_id is not None:
      ids = [tok.eos_id] + ids  # document models were trained on <eos> poem <eos>
    elif not ids:  # unprompted: start after a newline, as nanoGPT does (or the first character)
      ids = [tok.token_strings().index("\n") if "\n" in tok.token_strings() else 0]
    max_tokens = int(mc.get("sample_tokens", 256) if max_tokens is None else max_tokens)
    if max_tokens <= 0:
      raise ArtjaxError(f"max_tokens must be positive, got {max_tokens}")
    out = self.generate_tokens(params, rng, ids, num, max_tokens, temperature, top_k, top_p, allowed, cache)
    texts = []
    for row in out:
      text = tok.decode([t for t in row if t >= 0])
      cuts = [text.find(s) for s in stop if s and s in text]
      text = prompt + (text[:min(cuts)] if cuts else text)
      if allowed is not None:  # a regulated poem reads as one couplet per line
        text = text.replace("。", "。\n").rstrip("\n")
      texts.append(convert_script(text, script) if script else text)
    return texts

  def _form_constraint(self, form, acrostic, prompt_ids):
    """(allowed mask for the remaining tokens, prompt ids) for a regulated-verse form and/or acrostic."""
    if self.tokenizer.eos_id is None:
      raise ArtjaxError("--form/--acrostic need a poetry model (one trained on <eos>-framed poems)")
    if form:
      chars, lines = poetry.parse_form(form)
    elif len(acrostic) in (4, 8):
      chars, lines = 5, len(acrostic)  # an acrostic alone: 五言, 绝句 for 4 characters, 律诗 for 8
    else:
      raise ArtjaxError(f"an acrostic of {len(acrostic)} characters needs --form (4 lines: 绝句, 8: 律诗)")
    mask = poetry.form_mask(self.tokenizer, chars, lines, acrostic)
    for j, t in enumerate(prompt_ids):  # a prompt is the poem's beginning: it must fit the form too
      if j >= len(mask) - 1 or not mask[j, t]:
        raise ArtjaxError(f"the prompt does not fit the form at character {j + 1} "
                          f"({self.tokenizer.decode([t])!r})")
    return mask[len(prompt_ids):], list(prompt_ids)
