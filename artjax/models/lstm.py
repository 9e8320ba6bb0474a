"""Multi-layer LSTM language model (Karpathy's char-rnn / Zaremba et al.) with the same interface as the Transformer.

  __call__(tokens, train)            -> logits (B, T, V), from a zero state
Inputs are token ids (B, T) int, or with `input_size` > 0 real vectors (B, T, input_size) such as
piano-roll frames (88 keys; then V = 88 independent Bernoulli logits, as in Bai et al. 2018).
  decode(tokens, cache, pos, length) -> (logits, cache): continues from the carries in `cache`; with
                                        `length`, the returned carry is the one after token length-1
The "cache" of an RNN is its carry, so cached decoding costs O(1) per token.

`dtype` is the compute dtype ('bfloat16' on GPUs/TPUs) of the embedding, the LSTM cells' matmuls and the
head, with float32 parameters and float32 logits. The carries stay float32 (the cell's state update mixes
them with its bf16 gates in float32), so a long sequence does not accumulate bf16 rounding in its memory.
"""

import flax.linen as nn
import jax.numpy as jnp

from artjax.errors import ArtjaxError
from artjax.models import MODELS
from artjax.models.layers import dense, named


class LSTMLM(nn.Module):
  vocab_size: int
  emb_dim: int = 128
  hidden_dim: int = 512
  num_layers: int = 2
  dropout: float = 0.0  # between layers (Zaremba et al. 2014), not on the recurrent connections
  max_len: int = 256  # decoding window (capped by data.seq_len; the model itself has no position limit)
  tie_weights: bool = False  # needs emb_dim == hidden_dim
  input_size: int = 0  # 0: token ids; > 0: vectors of this size (frames), read through a Dense layer
  dtype: str = "float32"  # compute dtype; parameters, carries and logits stay float32

  def setup(self):
    d = jnp.dtype(self.dtype)
    if self.input_size:
      if self.tie_weights:
        raise ArtjaxError("model.tie_weights needs token inputs (model.input_size = 0)")
      self.embed = dense(self.emb_dim, (None, "embed"), dtype=d)
    else:
      self.embed = nn.Embed(self.vocab_size, self.emb_dim, dtype=d,
                            embedding_init=named(nn.initializers.normal(0.1), "vocab", "embed"))
    self.rnns = [nn.RNN(nn.OptimizedLSTMCell(self.hidden_dim, dtype=d), return_carry=True, name=f"lstm{i}")
                 for i in range(self.num_layers)]
    self.drop = nn.Dropout(self.dropout)
    if self.tie_weights:
      if self.emb_dim != self.hidden_dim:
        raise ArtjaxError("model.tie_weights needs model.emb_dim == model.hidden_dim")
      self.bias = self.param("head_bias", named(nn.initializers.zeros, "vocab"), (self.vocab_size,))
    else:
      self.head = dense(self.vocab_size, ("embed", "vocab"), dtype=d)

  def _forward(self, tokens, carries, train, length=None):
    x = self.drop(self.embed(tokens.astype(jnp.float32) if self.input_size else tokens), deterministic=not train)
    seq_lengths = None if length is None else jnp.full((tokens.shape[0],), length, jnp.int32)
    new = []
    for rnn, carry in zip(self.rnns, carries):
      carry, x = rnn(x, initial_carry=carry, seq_lengths=seq_lengths)
      x = self.drop(x, deterministic=not train)
      new.append(carry)
    logits = self.embed.attend(x) + self.bias if self.tie_weights else self.head(x)
    return logits.astype(jnp.float32), new

  def __call__(self, tokens, train: bool = False):
    return self._forward(tokens, self.init_cache(tokens.shape[0]), train)[0]

  def decode(self, tokens, cache, pos, length=None):
    del pos  # an RNN's state already encodes where it is
    return self._forward(tokens, cache, False, length)

  def init_cache(self, batch: int, length: int | None = None):
    del length
    zeros = jnp.zeros((batch, self.hidden_dim), jnp.float32)
    return [(zeros, zeros) for _ in range(self.num_layers)]


MODELS.register("lstm")(LSTMLM)
