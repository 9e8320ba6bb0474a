"""The shared sampling pieces of the Method contract: labels, slerp, latent interpolation grids."""

from flax.core import meta
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from artjax import methods
from artjax.errors import ArtjaxError
from artjax.methods.base import sample_labels, slerp
from artjax.inference import Sampler
from conftest import smoke_config


def test_sample_labels():
  np.testing.assert_array_equal(sample_labels(None, 7, 3), [0, 1, 2, 0, 1, 2, 0])
  np.testing.assert_array_equal(sample_labels(2, 3, 3), [2, 2, 2])
  np.testing.assert_array_equal(sample_labels(np.array([1, 0, 1]), 3, 3), [1, 0, 1])
  for bad in (3, -1, np.array([0, 3, 1]), np.array([0, 1])):
    with pytest.raises(ArtjaxError):
      sample_labels(bad, 3, 3)


def test_slerp_endpoints_and_norm():
  a, b = jax.random.normal(jax.random.key(0), (2, 4, 16))
  np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-5)
  np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-5)
  unit_a, unit_b = a / jnp.linalg.norm(a, axis=-1, keepdims=True), b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  mid = slerp(unit_a, unit_b, 0.5)  # on the great circle: unit norm (a lerp would shrink it)
  np.testing.assert_allclose(jnp.linalg.norm(mid, axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(slerp(a, a, 0.3), a, atol=1e-5)  # parallel latents: no division by zero


def test_interpolation_rows_walk_between_two_prior_draws():
  config = smoke_config()
  method = methods.build(config)
  batch = {"image": jnp.zeros((2, 16, 16, 1))}
  params, state = meta.unbox(method.init(jax.random.key(0), batch))
  grid = Sampler(config, method, params, state).interpolate(rows=2, cols=3, seed=5).items
  assert grid.shape == (6, 16, 16, 1)
  key = jax.random.key(5)
  a, b = method.prior(jax.random.fold_in(key, 0), 2), method.prior(jax.random.fold_in(key, 1), 2)
  ends = np.asarray(method.decode(params, state, jnp.concatenate([a, b]), jax.random.fold_in(key, 2)))
  np.testing.assert_allclose(grid[[0, 3]], ends[:2], atol=1e-5)  # first column: the first draws
  np.testing.assert_allclose(grid[[2, 5]], ends[2:], atol=1e-5)  # last column: the second draws
  assert not np.allclose(grid[1], grid[0], atol=1e-4)
