"""The decode core every autoregressive family shares: one compiled `lax.while_loop` over new items.

An item is whatever the model reads and predicts one position at a time: a token id () int32 for the
language models, a piano-roll frame (88,) uint8 for the music frame models. The loop needs only
  a step: the model's full forward `model.apply(v, window)` (B, W, ...) -> logits (B, W, ...), and,
      with `use_cache`, `decode(items, cache, pos, length)` -> (logits, cache) that appends to a cache
      (a Transformer's keys/values, an RNN's carry);
  a pick: `pick(logits (B, ...), keys (B,), i) -> (items (B, ...), ended (B,) bool)`: how the next items
      are drawn from the logits (categorical with temperature/top-k/top-p and masks for text,
      Bernoulli per key for piano rolls), built by each family from its own per-row options.
The context lives in a fixed window of W items: the prompt (primer) is placed in it, each new item is
appended, and when the window is full the oldest W - keep items are dropped and the rest re-encoded
(nanoGPT crops its context the same way, one token at a time). `use_cache=False` re-runs the model over
the window for every item (models without a cache, e.g. a TCN); both give the same items.
"""

import jax
import jax.numpy as jnp


def bucket(n: int, minimum: int = 64) -> int:
  """Next power of two >= n (at least `minimum`): the padded length a compiled sampler is built for."""
  return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def decode_loop(model, params, window, count, keys, max_new, pick, *, steps: int, use_cache: bool, keep: int,
                fill=-1, pin: int = 0):
  """Generates up to `max_new[b]` (<= steps) items per row after the first `count` items of `window`.

  window: (B, W, ...) items (int32 tokens or uint8 frames); count: int32 scalar, the valid prefix
  (>= 1). keys: (B,) typed PRNG keys: item i of row b is drawn with fold_in(keys[b], i), so a row does
  not depend on the other rows of its batch. max_new: (B,) int32. `pick`: see the module docstring; it
  closes over the family's per-row sampling arrays, so they may change without recompiling.
  When the window is full, the first `pin` items stay (e.g. a start frame) and the newest keep - pin of
  the rest move up behind them. Returns (B, steps, ...) items of window.dtype, `fill` after a row's end
  (pick's `ended` or max_new).
  """
  if not 0 <= pin < keep <= window.shape[1]:
    raise ValueError(f"decode_loop needs 0 <= pin < keep <= window, got pin={pin}, keep={keep}, "
                     f"window={window.shape[1]}")
  b, w = window.shape[:2]
  variables = {"params": params}
  take = lambda logits, i: jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False)  # noqa: E731
  zeros = (0,) * (window.ndim - 2)

  def encode_window(win, n):  # logits for the item after win[:, :n], and the cache of the window
    if use_cache:
      logits, cache = model.apply(variables, win, model.init_cache(b, w), 0, n, method="decode")
    else:
      logits, cache = model.apply(variables, win), None
    return take(logits, n - 1), cache

  def per_row(flags, like):  # (B,) -> broadcastable against (B, ...) items
    return flags.reshape(flags.shape + (1,) * (like.ndim - 1))

  def body(carry):
    i, win, n, cache, logits, out, done = carry
    step_keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(keys)
    item, ended = pick(logits, step_keys, i)
    item = item.astype(win.dtype)
    out = out.at[:, i].set(jnp.where(per_row(done, item), jnp.asarray(fill, win.dtype), item))
    done = done | ended | (i + 1 >= max_new)
    full = n == w
    slid = jnp.concatenate([win[:, :pin], jnp.roll(win[:, pin:], keep - w, axis=1)], axis=1)
    win = jnp.where(full, slid, win)  # drop the oldest w - keep items after the pinned ones
    n = jnp.where(full, keep, n)
    win = jax.lax.dynamic_update_slice(win, item[:, None], (0, n) + zeros)
    n = n + 1
    if use_cache:
      def step(_):
        step_logits, new_cache = model.apply(variables, item[:, None], cache, n - 1, method="decode")
        return step_logits[:, 0], new_cache
      logits, cache = jax.lax.cond(full, lambda _: encode_window(win, n), step, None)
    else:
      logits = take(model.apply(variables, win), n - 1)
    return i + 1, win, n, cache, logits, out, done

  def cond(carry):
    i, done = carry[0], carry[-1]
    return (i < steps) & ~jnp.all(done)

  logits, cache = encode_window(window, count)
  init = (jnp.int32(0), window, jnp.asarray(count, jnp.int32), cache, logits,
          jnp.full((b, steps) + window.shape[2:], fill, window.dtype), max_new <= 0)
  return jax.lax.while_loop(cond, body, init)[5]


def filter_logits(logits, temperature, top_k, top_p):
  """Temperature, then top-k (0: off), then nucleus top-p (1: off) on (B, V) logits; filtered ones become -inf.

  temperature, top_k, top_p are scalars or (B,) per-row values. Ties with the k-th logit are kept (so
  top_k=1 may keep several exactly equal maxima). Top-p keeps the smallest prefix of the sorted
  distribution whose mass reaches top_p (Holtzman et al. 2020).
  """
  col = lambda v: jnp.reshape(jnp.asarray(v), (-1, 1))  # noqa: E731  scalar or (B,) -> broadcastable column
  temperature, top_k, top_p = col(temperature), col(top_k), col(top_p)
  logits = logits / jnp.maximum(temperature, 1e-6)
  desc = -jnp.sort(-logits, axis=-1)
  kth = jnp.take_along_axis(desc, jnp.clip(top_k - 1, 0, logits.shape[-1] - 1), axis=-1)
  logits = jnp.where((top_k > 0) & (logits < kth), -jnp.inf, logits)
  desc = -jnp.sort(-logits, axis=-1)
  probs = jax.nn.softmax(desc, axis=-1)
  # Keep the smallest prefix whose mass reaches top_p: tokens whose preceding mass is still < top_p.
  keep = jnp.sum((jnp.cumsum(probs, axis=-1) - probs) < top_p, axis=-1, keepdims=True)
  cutoff = jnp.take_along_axis(desc, jnp.maximum(keep - 1, 0), axis=-1)
  # top_p = 1 must keep everything: the float32 running sum can reach 1 before the tail does.
  return jnp.where((top_p < 1.0) & (logits < cutoff), -jnp.inf, logits)


def pick_categorical(logits, keys, temperature, top_k, top_p):
  """Sampled ids (B,) from (B, V) logits with one key per row, or the argmax where temperature is 0."""
  # The two sorts of filter_logits are skipped per token when no row uses top-k or top-p.
  filtered = jax.lax.cond(jnp.any(top_k > 0) | jnp.any(top_p < 1.0),
                          lambda l: filter_logits(l, temperature, top_k, top_p),
                          lambda l: l / jnp.maximum(temperature, 1e-6)[:, None], logits)
  sampled = jax.vmap(lambda k, l: jax.random.categorical(k, l))(keys, filtered)
  return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def pick_bernoulli(logits, keys, temperature):
  """Independent binary outcomes (B, K) from (B, K) logits: on with probability sigmoid(logit / T);
  where temperature is 0, on exactly when the logit is > 0 (probability > 1/2)."""
  t = jnp.reshape(temperature, (-1,) + (1,) * (logits.ndim - 1))
  probs = jax.nn.sigmoid(logits / jnp.maximum(t, 1e-6))
  sampled = jax.vmap(lambda k, p: jax.random.bernoulli(k, p))(keys, probs)
  return jnp.where(t > 0, sampled, logits > 0)
