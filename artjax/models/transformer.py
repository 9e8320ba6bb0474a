"""Decoder-only Transformer language model (GPT-2 / nanoGPT style, pre-LayerNorm) with a functional KV cache.

Two entry points share the weights:
  __call__(tokens, train)            -> logits (B, T, V)           full causal forward (training, scoring)
  decode(tokens, cache, pos, length) -> (logits (B, T, V), cache)  tokens sit at positions pos..pos+T-1;
                                        their keys/values are written into the cache, and each query attends
                                        to cached positions <= its own. A prompt (T > 1) or one token (T = 1).
The cache is a plain pytree (one (k, v) pair of (B, S, heads, head_dim) per layer) from `init_cache`,
so a sampler can carry it through `lax.while_loop`. Inputs are token ids (B, T), or with `input_size` > 0
real vectors (B, T, input_size), e.g. piano-roll frames, read through a Dense layer (no tied head).
Attention is `jax.nn.dot_product_attention`; the
full causal pass asks it for the fused cuDNN (flash) kernel on GPUs in 16-bit compute (model.attention
'auto'), since JAX's own default is still its XLA implementation.

For large models: weights carry logical axis names (vocab, embed, heads, kv, mlp) that the config's
sharding rules map onto mesh axes (Megatron-style tensor parallelism: q/k/v and the MLP's first layer
split by output, the projections by input); `remat` recomputes activations in the backward pass
('none', 'dots': keep only weight matmul outputs, 'full': keep only block inputs); `scan_layers`
runs the blocks as one `nn.scan` (one compiled block instead of `num_layers`: faster compiles; the
parameters are stacked under `blocks` with a leading `layers` axis, so it is a different tree).
`mlp_layout` 'auto' holds the MLP's hidden activations hidden-major on the CPU backend only
(artjax.models.cpu_layers: same parameters and function, no transposing GELU-backward fusion on XLA:CPU).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from artjax.errors import ArtjaxError
from artjax.models import MODELS, cpu_layers
from artjax.models.layers import named

REMAT_POLICIES = {  # model.remat -> what the backward pass may keep (None: everything, no remat)
    "none": None,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def rotary(x, positions, base: float = 10000.0):
  """Rotary position embedding (Su et al. 2021; GPT-NeoX half-split layout). x: (B, T, H, D); positions: (T,)."""
  d = x.shape[-1]
  freq = base ** (-jnp.arange(0, d // 2, dtype=jnp.float32) * 2.0 / d)
  angle = positions.astype(jnp.float32)[:, None] * freq[None, :]  # (T, D/2)
  cos, sin = jnp.cos(angle)[None, :, None, :], jnp.sin(angle)[None, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


def attention_implementation(setting: str, dtype) -> str | None:
  """'auto': cuDNN's fused kernel where it applies (GPU, 16-bit); 'xla' / 'cudnn' force one."""
  if setting == "auto":
    on_gpu = jax.default_backend() == "gpu"
    return "cudnn" if on_gpu and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) else "xla"
  if setting not in ("xla", "cudnn"):
    raise ArtjaxError(f"model.attention must be 'auto', 'xla' or 'cudnn', not {setting!r}")
  return setting


class CausalSelfAttention(nn.Module):
  num_heads: int
  dropout: float
  rotary: bool
  use_bias: bool
  proj_init_std: float
  dtype: jnp.dtype
  attention: str = "auto"

  @nn.compact
  def __call__(self, x, positions, cache=None, train=False):
    b, t, c = x.shape
    h = self.num_heads
    zeros = nn.initializers.zeros_init()
    # (C, 3, heads, head_dim): q, k and v of one head sit on the same tensor-parallel shard.
    # nn.Einsum, not DenseGeneral: DenseGeneral initialises a flattened kernel, which its names do not fit.
    qkv = nn.Einsum((c, 3, h, c // h), "btc,cshd->btshd", use_bias=self.use_bias, dtype=self.dtype, name="qkv",
                    kernel_init=named(nn.initializers.normal(0.02), "embed", None, "heads", "kv"),
                    bias_init=named(zeros, None, "heads", "kv"))(x)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if self.rotary:
      q, k = rotary(q, positions), rotary(k, positions)
    if cache is None:
      y = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                       implementation=attention_implementation(self.attention, self.dtype))
    else:
      ck, cv = cache
      ck = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), (0, positions[0], 0, 0))
      cv = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), (0, positions[0], 0, 0))
      mask = jnp.arange(ck.shape[1])[None, :] <= positions[:, None]  # (T, S): causal over absolute positions
      y = jax.nn.dot_product_attention(q, ck.astype(q.dtype), cv.astype(q.dtype), mask=mask[None, None])
      cache = (ck, cv)
    y = nn.Einsum((h, c // h, c), "bthd,hdc->btc", use_bias=self.use_bias, dtype=self.dtype, name="proj",
                  kernel_init=named(nn.initializers.normal(self.proj_init_std), "heads", "kv", "embed"),
                  bias_init=named(zeros, "embed"))(y)
    return nn.Dropout(self.dropout)(y, deterministic=not train), cache


class Block(nn.Module):
  num_heads: int
  mlp_ratio: int
  dropout: float
  rotary: bool
  use_bias: bool
  proj_init_std: float
  dtype: jnp.dtype
  attention: str = "auto"
  mlp_layout: str = "auto"

  @nn.compact
  def __call__(self, x, positions, cache=None, train=False):
    ln = lambda name: nn.LayerNorm(use_bias=self.use_bias, dtype=self.dtype, name=name)
    y, cache = CausalSelfAttention(self.num_heads, self.dropout, self.rotary, self.use_bias, self.proj_init_std,
                                   self.dtype, self.attention, name="attn")(ln("ln1")(x), positions, cache, train)
    x = x + y
    c = x.shape[-1]
    init = lambda std, *names: named(nn.initializers.normal(std), *names)  # noqa: E731
    zeros = lambda name: named(nn.initializers.zeros_init(), name)  # noqa: E731
    # Parameters fc / fc_proj as the nn.Dense pair this replaces (same tree, names and initialisers).
    y = cpu_layers.mlp(ln("ln2")(x), self.mlp_ratio * c, use_bias=self.use_bias, dtype=self.dtype,
                       fc_init=init(0.02, "embed", "mlp"), proj_init=init(self.proj_init_std, "mlp", "embed"),
                       fc_bias_init=zeros("mlp"), proj_bias_init=zeros("embed"),
                       layout=cpu_layers.cpu_layout(self.mlp_layout))
    x = x + nn.Dropout(self.dropout)(y, deterministic=not train)
    return nn.with_logical_constraint(x, ("batch", "length", "embed")), cache


class Transformer(nn.Module):
  """GPT: token (+ learned position) embedding, `num_layers` pre-LN blocks, final LN, (tied) LM head."""

  vocab_size: int
  num_layers: int = 4
  num_heads: int = 4
  emb_dim: int = 128
  max_len: int = 64  # context window: learned positions exist only up to here; samplers slide within it
  dropout: float = 0.0
  positions: str = "learned"  # 'learned' | 'rotary'
  tie_weights: bool = True
  mlp_ratio: int = 4
  use_bias: bool = False
  dtype: str = "float32"  # compute dtype ('bfloat16' on GPUs/TPUs); params and logits stay float32
  attention: str = "auto"  # 'auto' (cuDNN flash attention on GPUs in 16-bit, else XLA) | 'xla' | 'cudnn'
  input_size: int = 0  # 0: token ids; > 0: vectors of this size (piano-roll frames)
  remat: str = "none"  # 'none' | 'dots' | 'full' (see the module docstring)
  scan_layers: bool = False
  mlp_layout: str = "auto"  # 'auto' (hidden-major on CPU, else standard) | 'standard' | 'hidden_major'

  def setup(self):
    if self.positions not in ("learned", "rotary"):
      raise ArtjaxError(f"model.positions must be 'learned' or 'rotary', not {self.positions!r}")
    if self.emb_dim % self.num_heads or (self.positions == "rotary" and (self.emb_dim // self.num_heads) % 2):
      raise ArtjaxError(f"model.emb_dim {self.emb_dim} must split into {self.num_heads} heads "
                        f"(of even size for rotary positions)")
    if self.remat not in REMAT_POLICIES:
      raise ArtjaxError(f"model.remat must be one of {', '.join(REMAT_POLICIES)}, not {self.remat!r}")
    init = nn.initializers.normal(0.02)
    if self.input_size:
      if self.tie_weights:
        raise ArtjaxError("model.tie_weights needs token inputs (model.input_size = 0)")
      self.wte = nn.Dense(self.emb_dim, dtype=jnp.dtype(self.dtype), kernel_init=named(init, None, "embed"),
                          bias_init=named(nn.initializers.zeros_init(), "embed"))
    else:
      self.wte = nn.Embed(self.vocab_size, self.emb_dim, embedding_init=named(init, "vocab", "embed"))
    if self.positions == "learned":
      self.wpe = nn.Embed(self.max_len, self.emb_dim, embedding_init=named(init, None, "embed"))
    # GPT-2: residual projections scaled by 1/sqrt(2 * layers) so the residual stream keeps its scale.
    proj_std = 0.02 / math.sqrt(2 * self.num_layers)
    block = Block
    if REMAT_POLICIES[self.remat] is not None:  # `train` (argument 4, counting self) is a Python bool
      block = nn.remat(Block, policy=REMAT_POLICIES[self.remat], prevent_cse=not self.scan_layers,
                       static_argnums=(4,))
    args = (self.num_heads, self.mlp_ratio, self.dropout, self.positions == "rotary", self.use_bias, proj_std,
            jnp.dtype(self.dtype), self.attention, self.mlp_layout)
    if self.scan_layers:
      self.blocks = block(*args, name="blocks")
    else:
      self.blocks = [block(*args, name=f"block{i}") for i in range(self.num_layers)]
    self.ln_f = nn.LayerNorm(use_bias=self.use_bias, dtype=jnp.dtype(self.dtype))
    if not self.tie_weights:
      self.head = nn.Dense(self.vocab_size, use_bias=False, kernel_init=named(init, "embed", "vocab"))
    self.drop = nn.Dropout(self.dropout)

  def _forward(self, tokens, positions, caches, train):
    x = self.wte(tokens.astype(jnp.float32) if self.input_size else tokens)
    if self.positions == "learned":
      x = x + self.wpe(positions)[None]
    x = self.drop(x.astype(jnp.dtype(self.dtype)), deterministic=not train)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    if self.scan_layers:
      def body(block, x, positions, cache):
        return block(x, positions, cache, train)

      x, new_caches = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                              in_axes=(nn.broadcast, 0), length=self.num_layers,
                              metadata_params={nn.PARTITION_NAME: "layers"})(self.blocks, x, positions, caches)
    else:
      new_caches = []
      for i, block in enumerate(self.blocks):
        x, cache = block(x, positions, None if caches is None else caches[i], train)
        new_caches.append(cache)
    x = self.ln_f(x).astype(jnp.float32)
    logits = self.wte.attend(x) if self.tie_weights else self.head(x)
    return logits, new_caches

  def __call__(self, tokens, train: bool = False):
    if tokens.shape[1] > self.max_len:
      raise ArtjaxError(f"sequence of {tokens.shape[1]} tokens is longer than model.max_len={self.max_len}")
    return self._forward(tokens, jnp.arange(tokens.shape[1]), None, train)[0]

  def decode(self, tokens, cache, pos, length=None):
    """Logits of `tokens` placed at positions pos.. (all < max_len), attending to the cache; updates the cache."""
    del length  # cache entries past the valid tokens are never attended to, and are overwritten later
    logits, caches = self._forward(tokens, pos + jnp.arange(tokens.shape[1]), cache, False)
    return logits, caches

  def init_cache(self, batch: int, length: int | None = None):
    """An empty cache for `batch` sequences of up to `length` (default max_len) positions."""
    length = length or self.max_len
    shape = (batch, length, self.num_heads, self.emb_dim // self.num_heads)
    if self.scan_layers:  # one stacked (k, v) pair with a leading layers axis, as nn.scan carries it
      shape = (self.num_layers,) + shape
      return (jnp.zeros(shape, jnp.dtype(self.dtype)), jnp.zeros(shape, jnp.dtype(self.dtype)))
    return [(jnp.zeros(shape, jnp.dtype(self.dtype)), jnp.zeros(shape, jnp.dtype(self.dtype)))
            for _ in range(self.num_layers)]


MODELS.register("transformer")(Transformer)
