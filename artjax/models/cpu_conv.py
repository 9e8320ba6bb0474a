"""2-D convolutions written as im2col + one matrix product, for XLA:CPU.

XLA:CPU runs a convolution on one core (its Eigen spatial-convolution kernel), while its matrix products
(dot) can use the intra-op thread pool; a 3x3 conv is the dot of a (B*H'*W', kh*kw*C) patch matrix with the
(kh*kw*C, features) kernel. `conv2d(..., impl=...)` computes the same convolution as
`jax.lax.conv_general_dilated` (NHWC input, HWIO kernel) by:
  'xla'     the convolution itself (the standard path; use it on GPU/TPU);
  'im2col'  patches (pad + kh*kw strided slices, concatenated on channels) @ kernel; JAX differentiates the
            slices and the dot, so both gradients are matrix products + pads/adds;
  'wgrad'   forward and input gradient by the convolution, weight gradient as patches^T @ dy (custom_vjp).
`Conv` is a drop-in for flax.linen.Conv (same parameter names, shapes and initialisers) for 2-D,
feature_group_count 1, no dilation. Whether any of these is faster depends on the machine: figures in
experiments/perf/README.md (tools/bench_vs_torch.py).
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("xla", "im2col", "wgrad")


def _pads(padding, size, kernel, stride):
  """((lo, hi), ...) for 'SAME' / 'VALID' / explicit pairs, per spatial dim (TensorFlow/flax SAME)."""
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return [(0, 0)] * len(size)
    if padding.upper() == "SAME":
      out = []
      for n, k, s in zip(size, kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        out.append((total // 2, total - total // 2))
      return out
    raise ValueError(f"unknown padding {padding!r}")
  return [tuple(p) for p in padding]


def patches(x, kernel_size, strides, pads):
  """(B, H, W, C) -> (B, H', W', kh*kw*C), features ordered (kh, kw, C) like an HWIO kernel's rows."""
  (kh, kw), (sh, sw) = kernel_size, strides
  x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  ho = (x.shape[1] - kh) // sh + 1
  wo = (x.shape[2] - kw) // sw + 1
  cols = [lax.slice(x, (0, i, j, 0), (x.shape[0], i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, x.shape[3]),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  return jnp.concatenate(cols, axis=-1)


def _xla_conv(x, kernel, strides, pads, precision=None):
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=precision)


def _im2col_conv(x, kernel, strides, pads, precision=None):
  kh, kw, c, f = kernel.shape
  p = patches(x, (kh, kw), strides, pads)
  return jnp.dot(p, kernel.reshape(kh * kw * c, f), precision=precision)


def _wgrad_conv(x, kernel, strides, pads, precision=None):
  strides, pads = tuple(strides), tuple(tuple(p) for p in pads)

  @jax.custom_vjp
  def f(x, kernel):
    return _xla_conv(x, kernel, strides, pads, precision)

  def fwd(x, kernel):
    return f(x, kernel), (x, kernel)

  def bwd(res, dy):
    x, kernel = res
    kh, kw, c, feat = kernel.shape
    _, dx_fn = jax.vjp(lambda x: _xla_conv(x, kernel, strides, pads, precision), x)
    (dx,) = dx_fn(dy)
    p = patches(x, (kh, kw), strides, pads)
    dk = jnp.einsum("bhwk,bhwf->kf", p, dy, precision=precision).reshape(kh, kw, c, feat)
    return dx, dk

  f.defvjp(fwd, bwd)
  return f(x, kernel)


def conv2d(x, kernel, strides=(1, 1), padding="SAME", impl: str = "xla", precision=None):
  """NHWC x HWIO -> NHWC, as lax.conv_general_dilated(x, kernel, strides, padding, NHWC/HWIO/NHWC)."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl {impl!r}: use one of {IMPLS}")
  pads = _pads(padding, x.shape[1:3], kernel.shape[:2], strides)
  fn = {"xla": _xla_conv, "im2col": _im2col_conv, "wgrad": _wgrad_conv}[impl]
  return fn(x, kernel, tuple(strides), pads, precision)


def default_impl(requested: str = "auto") -> str:
  """'auto' -> 'xla' on every backend (the measured choice, see experiments/perf/README.md); else as given."""
  if requested == "auto":
    return "xla"
  if requested not in IMPLS:
    raise ValueError(f"conv impl {requested!r}: use 'auto' or one of {IMPLS}")
  return requested


class Conv(nn.Module):
  """flax.linen.Conv (2-D, no groups/dilation) with the convolution computed by `conv2d(impl=...)`.

  Parameters are named and shaped as nn.Conv's ('kernel' (kh, kw, in, features), 'bias' (features,)), so a
  checkpoint of one loads into the other.
  """
  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Any = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  precision: Any = None
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, tuple(self.strides), self.padding, default_impl(self.impl), self.precision)
    if bias is not None:
      y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
    return y
