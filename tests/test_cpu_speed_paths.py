"""The CPU speed paths compute what the standard layers compute: values and gradients (no timing here).

artjax.models.cpu_conv (im2col / custom weight-gradient convolutions) against lax.conv_general_dilated and
flax.linen.Conv; artjax.models.cpu_layers.mlp (hidden-major Transformer MLP) against two nn.Dense layers,
including the parameter tree (so checkpoints stay interchangeable).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax.errors import ArtjaxError
from artjax.models import cpu_conv, cpu_layers

def _close(a, b):
  """Equal up to float32 rounding: rtol 1e-4, atol 1e-5 of the array's largest magnitude."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    y = np.asarray(y)
    np.testing.assert_allclose(np.asarray(x), y, rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(np.abs(y)))))


# (input shape, kernel shape, strides, padding): the DCGAN's convs (3x3 'resize' convs, 4x4/2 discriminator
# convs, the 1-channel ends) at small sizes, plus VALID, explicit and odd sizes.
CONV_CASES = [
    ((2, 7, 7, 8), (3, 3, 8, 4), (1, 1), "SAME"),
    ((2, 8, 8, 4), (4, 4, 4, 6), (2, 2), "SAME"),
    ((2, 9, 9, 1), (4, 4, 1, 5), (2, 2), "SAME"),
    ((2, 6, 6, 3), (3, 3, 3, 1), (1, 1), "SAME"),
    ((1, 7, 5, 3), (3, 2, 3, 4), (1, 1), "VALID"),
    ((1, 6, 6, 2), (3, 3, 2, 3), (2, 1), ((1, 2), (0, 1))),
]


@pytest.mark.parametrize("impl", ["im2col", "wgrad"])
@pytest.mark.parametrize("xs,ks,strides,padding", CONV_CASES)
def test_conv2d_matches_lax_forward_and_gradients(impl, xs, ks, strides, padding):
  x = jax.random.normal(jax.random.key(0), xs)
  k = jax.random.normal(jax.random.key(1), ks) * 0.3
  ref = lambda x, k: jax.lax.conv_general_dilated(x, k, strides, padding,  # noqa: E731
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  new = lambda x, k: cpu_conv.conv2d(x, k, strides, padding, impl=impl)  # noqa: E731
  _close(jax.jit(new)(x, k), ref(x, k))
  w = jax.random.normal(jax.random.key(2), ref(x, k).shape)  # a generic cotangent
  loss = lambda f: lambda x, k: jnp.sum(jnp.tanh(f(x, k)) * w)  # noqa: E731
  _close(jax.jit(jax.grad(loss(new), argnums=(0, 1)))(x, k), jax.grad(loss(ref), argnums=(0, 1))(x, k))


def test_conv2d_second_order_and_vmap():
  """wgrad's custom_vjp composes with vmap and with a gradient of a gradient (WGAN-GP needs the latter)."""
  x = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 3))
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4)) * 0.3
  ref = lambda x: jnp.sum(jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",  # noqa: E731
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)
  for impl in ("im2col", "wgrad"):
    new = lambda x: jnp.sum(cpu_conv.conv2d(x, k, (1, 1), "SAME", impl=impl) ** 2)  # noqa: E731
    _close(jax.vmap(jax.grad(new))(x), jax.vmap(jax.grad(ref))(x))
  gp = lambda f: lambda x: jnp.sum(jax.grad(f)(x) ** 2)  # noqa: E731
  _close(jax.grad(gp(lambda x: jnp.sum(cpu_conv.conv2d(x, k, impl="im2col") ** 2)))(x[0]), jax.grad(gp(ref))(x[0]))


@pytest.mark.parametrize("impl", ["xla", "im2col", "wgrad", "auto"])
def test_conv_module_is_a_drop_in_for_nn_conv(impl):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  ref = nn.Conv(5, (4, 4), (2, 2), padding="SAME")
  new = cpu_conv.Conv(5, (4, 4), (2, 2), padding="SAME", impl=impl)
  params = ref.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, new.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, params)
  _close(new.init(jax.random.key(1), x), params)  # same initialisers, same key
  _close(new.apply(params, x), ref.apply(params, x))
  g = lambda m: jax.grad(lambda p: jnp.sum(m.apply(p, x) ** 2))(params)  # noqa: E731
  _close(g(new), g(ref))


def test_conv_rejects_unknown_impl():
  with pytest.raises(ValueError):
    cpu_conv.conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), impl="fast")
  assert cpu_conv.default_impl("auto") == "xla"


class _ReferenceMLP(nn.Module):
  """The Transformer block's MLP as written with nn.Dense (artjax.models.transformer.Block)."""
  use_bias: bool

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    y = nn.Dense(4 * c, use_bias=self.use_bias, name="fc", kernel_init=nn.initializers.normal(0.02))(x)
    return nn.Dense(c, use_bias=self.use_bias, name="fc_proj", kernel_init=nn.initializers.normal(0.01))(nn.gelu(y))


class _CpuMLP(nn.Module):
  use_bias: bool
  layout: str

  @nn.compact
  def __call__(self, x):
    return cpu_layers.mlp(x, 4 * x.shape[-1], use_bias=self.use_bias, dtype=None,
                          fc_init=nn.initializers.normal(0.02), proj_init=nn.initializers.normal(0.01),
                          layout=self.layout)


@pytest.mark.parametrize("layout", ["standard", "hidden_major"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_mlp_matches_dense_pair(layout, use_bias):
  x = jax.random.normal(jax.random.key(0), (3, 5, 16))
  ref, new = _ReferenceMLP(use_bias), _CpuMLP(use_bias, layout)
  params = ref.init(jax.random.key(1), x)
  new_params = new.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, new_params) == jax.tree.map(jnp.shape, params)  # same tree: checkpoints load
  _close(new_params, params)
  if use_bias:  # non-zero biases, so they are exercised
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(3), p.shape), params)
  _close(jax.jit(new.apply)(params, x), ref.apply(params, x))
  loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))  # noqa: E731
  _close(jax.jit(jax.grad(loss(new), argnums=(0, 1)))(params, x), jax.grad(loss(ref), argnums=(0, 1))(params, x))


def test_mlp_layout_choice_is_keyed_on_the_backend(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert cpu_layers.cpu_layout("auto") == "hidden_major"
  for backend in ("gpu", "tpu"):
    monkeypatch.setattr(jax, "default_backend", lambda b=backend: b)
    assert cpu_layers.cpu_layout("auto") == "standard"
  assert cpu_layers.cpu_layout("standard") == "standard"
  with pytest.raises(ArtjaxError, match="model.mlp_layout"):
    cpu_layers.cpu_layout("fast")


def test_mlp_keeps_logical_axis_names():
  """With named initialisers (as the Transformer's), the boxed parameters carry the same axis names."""
  named = lambda init, *names: nn.with_logical_partitioning(init, names)  # noqa: E731

  class Ref(nn.Module):
    @nn.compact
    def __call__(self, x):
      y = nn.Dense(32, name="fc", kernel_init=named(nn.initializers.normal(0.02), "embed", "mlp"),
                   bias_init=named(nn.initializers.zeros_init(), "mlp"))(x)
      return nn.Dense(8, name="fc_proj", kernel_init=named(nn.initializers.normal(0.01), "mlp", "embed"),
                      bias_init=named(nn.initializers.zeros_init(), "embed"))(nn.gelu(y))

  class New(nn.Module):
    @nn.compact
    def __call__(self, x):
      return cpu_layers.mlp(x, 32, use_bias=True, dtype=None,
                            fc_init=named(nn.initializers.normal(0.02), "embed", "mlp"),
                            proj_init=named(nn.initializers.normal(0.01), "mlp", "embed"),
                            fc_bias_init=named(nn.initializers.zeros_init(), "mlp"),
                            proj_bias_init=named(nn.initializers.zeros_init(), "embed"))

  x = jnp.ones((2, 3, 8))
  ref, new = Ref().init(jax.random.key(0), x), New().init(jax.random.key(0), x)
  names = lambda t: jax.tree.map(lambda p: p.names, t, is_leaf=lambda p: isinstance(p, nn.Partitioned))  # noqa: E731
  assert names(new) == names(ref)
  _close(New().apply(ref, x), Ref().apply(ref, x))
