"""Layer formulations that compute the same function as the standard ones but run faster on XLA:CPU.

`mlp(...)`: a Transformer MLP (Dense -> activation -> Dense) whose hidden activations are held
hidden-major, (hidden, B, T), instead of (B, T, hidden). Same parameters (two submodules named like the
nn.Dense layers they replace, each with 'kernel' (in, out) and optional 'bias'), same initialisers, same
values up to float rounding. Why: XLA:CPU (jax 0.10.2) runs the weight gradient of `fc` as a dot that wants
the activation gradient hidden-major; with the token-major layout it fuses the GELU backward into a
transposing loop fusion that costs as much as all the block's matrix products together (profile in
experiments/perf/README.md). With the hidden-major layout that transpose disappears.

`cpu_layout(setting)` resolves a model's 'auto' setting: the hidden-major layout on the CPU backend only,
the standard one on GPU/TPU (where nothing here has been measured).
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from artjax.errors import ArtjaxError


def cpu_layout(setting: str = "auto") -> str:
  """'auto' -> 'hidden_major' on the CPU backend, 'standard' elsewhere; 'standard' / 'hidden_major' as given."""
  if setting == "auto":
    return "hidden_major" if jax.default_backend() == "cpu" else "standard"
  if setting not in ("standard", "hidden_major"):
    raise ArtjaxError(f"model.mlp_layout must be 'auto', 'standard' or 'hidden_major', not {setting!r}")
  return setting


class DenseParams(nn.Module):
  """The parameters of an nn.Dense(features) reading `in_features` (same names, shapes, initialisers)."""
  in_features: int
  features: int
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self):
    kernel = self.param("kernel", self.kernel_init, (self.in_features, self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    return kernel, bias


def mlp(x, hidden: int, *, use_bias: bool, dtype, fc_init: Callable, proj_init: Callable,
        fc_bias_init: Callable = nn.initializers.zeros_init(), proj_bias_init: Callable = nn.initializers.zeros_init(),
        activation: Callable = nn.gelu, layout: str = "hidden_major", names=("fc", "fc_proj")):
  """x (..., C) -> (..., C): Dense(hidden) -> activation -> Dense(C), as two nn.Dense layers named `names`.

  Call it from a compact method: the parameters are that module's `names[0]` / `names[1]` submodules, so the
  parameter tree is the one nn.Dense(name=names[0]) / nn.Dense(name=names[1]) would make (initialisers may
  carry logical axis names, as nn.Dense's do).
  """
  c = x.shape[-1]
  w1, b1 = DenseParams(c, hidden, use_bias, fc_init, fc_bias_init, name=names[0])()
  w2, b2 = DenseParams(hidden, c, use_bias, proj_init, proj_bias_init, name=names[1])()
  x, w1, b1, w2, b2 = nn.dtypes.promote_dtype(x, w1, b1, w2, b2, dtype=dtype)
  if layout == "standard":
    h = jnp.einsum("...c,ch->...h", x, w1)
    if b1 is not None:
      h = h + b1
    y = jnp.einsum("...h,hc->...c", activation(h), w2)
  elif layout == "hidden_major":
    h = jnp.einsum("ch,...c->h...", w1, x)  # (hidden, ...)
    if b1 is not None:
      h = h + b1.reshape((hidden,) + (1,) * (x.ndim - 1))
    # The output is formed channel-major, (C, ...), and transposed once: C is 1/mlp_ratio of hidden, so this
    # transpose is smaller than the one a (..., C) product would make of the activations.
    y = jnp.moveaxis(jnp.einsum("hc,h...->c...", w2, activation(h)), 0, -1)
  else:
    raise ValueError(f"mlp layout {layout!r}: use 'standard' or 'hidden_major'")
  return y + b2 if b2 is not None else y
