"""Mixed precision for every config: `model.dtype = "bfloat16"` computes in bf16 with float32 master weights.

Per config under configs/ (its `:smoke` variant, on the family contract's tiny stand-in data), with
model.dtype bfloat16 (set whether or not the config names it; models default to float32), traced only:
the parameters and model state (BatchNorm statistics) are float32 after init and after `method.update`,
whose metrics are float32 too; and the compute really is bf16: every FLOP-heavy equation of the update's
jaxpr (dot_general, conv_general_dilated; forward and backward, inside scans too) is bf16, except the
documented float32 ones in `F32_ALLOWED`, and bf16 carries more than half of the matmul/conv FLOPs.

Per model (one config each, `RUN`), compiled: one jitted bf16 update runs with finite float32 metrics and
float32 parameters, and the model.dtype float32 variant has no bf16 value anywhere in its update's jaxpr
(float32 stays the exact default).

Cost: one XLA compile per model (without most optimisations, as in test_family_contract) and a trace per
config: ~50 s on 2 CPU cores, half of it the UNet's compile.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta
from jax.extend import core as jcore

from test_family_contract import CONFIGS, META, TFDS_SOURCES, _data_context, make_stand_ins
from conftest import smoke_config

HEAVY = ("dot_general", "conv_general_dilated")


def _vocab_head(e, method) -> bool:
  """The Transformer's LM head (tied `wte.attend` or the untied `head` Dense) and its gradients: the
  lead's transformer.py computes it in float32 on purpose ("params and logits stay float32"), and with
  frame inputs its `wte` input Dense too (x arrives float32 and is cast to `dtype` after the embedding).
  Recognised as a float32 matmul with a vocabulary-sized operand or result axis."""
  vocab = getattr(method.model, "vocab_size", None)
  return vocab is not None and any(vocab in v.aval.shape for v in (*e.invars[:2], *e.outvars))


# model name -> (predicate(eqn, method) -> whether a float32 heavy equation is expected there, why).
F32_ALLOWED = {"transformer": _vocab_head}


def _sub_jaxprs(params):
  for value in params.values():
    for x in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(x, jcore.ClosedJaxpr):
        yield x.jaxpr
      elif isinstance(x, jcore.Jaxpr):
        yield x


def _eqns(jaxpr):
  """Every equation, recursing into scans, pjit, custom_vjp, remat, cond..."""
  for e in jaxpr.eqns:
    yield e
    for sub in _sub_jaxprs(e.params):
      yield from _eqns(sub)


def _flops(e) -> int:
  out = math.prod(e.outvars[0].aval.shape)
  lhs, rhs = (v.aval for v in e.invars[:2])
  if e.primitive.name == "dot_general":
    (contract, _), _ = e.params["dimension_numbers"]
    return 2 * out * math.prod(lhs.shape[i] for i in contract)
  out_features = rhs.shape[e.params["dimension_numbers"].rhs_spec[0]]
  return 2 * out * math.prod(rhs.shape) // out_features


def _is_bf16(e) -> bool:
  """bf16 operands, or an explicit bf16 dot algorithm: jax.nn.dot_product_attention's backward multiplies
  its float32 softmax cotangents by bf16 values with precision BF16_BF16_F32 (bf16 products, float32 sums)."""
  if all(v.aval.dtype == jnp.bfloat16 for v in e.invars[:2]):
    return True
  return str(e.params.get("precision")).startswith("BF16_BF16_")


def _describe(e) -> str:
  return f"{e.primitive.name}({', '.join(str(v.aval) for v in e.invars[:2])}) -> {e.outvars[0].aval}"


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
  return make_stand_ins(tmp_path_factory.mktemp("precision") / "data")


@pytest.fixture(scope="module", autouse=True)
def _fast_compile():
  # As in test_family_contract: XLA's optimisations cost more than one tiny step.
  flag = "jax_disable_most_optimizations"
  before = jax.config.read(flag)
  jax.config.update(flag, True)
  yield
  jax.config.update(flag, before)


def _config(path, stand_ins, dtype):
  from artjax import data
  from artjax.utils.config import with_absolute_data_paths

  config = smoke_config(f"{path}:smoke", **stand_ins[META[path]["data"]])
  with config.unlocked():  # most configs leave model.dtype at the model's default (float32)
    config.model.dtype = dtype
  return data.prepare(with_absolute_data_paths(config))


def _setup(path, stand_ins):
  """(bf16 method, float32 method, first batch): the config's smoke variant on its stand-in data."""
  from artjax import data, methods

  with _data_context(META[path]["data"]):
    config = _config(path, stand_ins, "bfloat16")
    source = data.make_source(config.data, config.data.get("split", "train"))
    loader = data.Loader(source, data.make_preprocess(config.data, source), config.batch_size, config.seed,
                         shuffle=False)
    batch = loader.batch(0)
    return methods.build(config), methods.build(_config(path, stand_ins, "float32")), batch


def _one_per_model() -> dict:
  """model name -> the config whose step is compiled and run: the first by path, preferring data that
  needs no TFDS. One compile per model keeps the file fast; every config's update is still traced."""
  chosen = {}
  for path in sorted(CONFIGS, key=lambda p: (META[p]["data"] in TFDS_SOURCES, p)):
    chosen.setdefault(smoke_config(f"{path}:smoke").model.name, path)
  return chosen


RUN = _one_per_model()


def _abstract_args(method, batch):
  """Abstract (params, model_state, opt_state, batch, key) for tracing `method.update` without running init."""
  params, model_state = jax.eval_shape(lambda key, b: meta.unbox(method.init(key, b)), jax.random.key(0), batch)
  return params, model_state, jax.eval_shape(method.init_opt_state, params), batch, jax.random.key(1)


def _assert_float32(path, tree, when):
  floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats), (
      f"{path}: bf16 compute must keep float32 parameters, model state and metrics; after {when}: "
      f"{sorted({str(x.dtype) for x in floats})}")


def _ids(paths):
  return [pytest.param(p, id=p.removeprefix("configs/").removesuffix(".py")) for p in paths]


@pytest.mark.parametrize("path", _ids(CONFIGS))
def test_bf16_compute_float32_master_weights(path, stand_ins):
  """Traced, not compiled: float32 parameters and state after init and update, bf16 matmuls and convs."""
  method, _, batch = _setup(path, stand_ins)
  args = _abstract_args(method, batch)
  _assert_float32(path, args[:2], "init")
  closed = jax.make_jaxpr(method.update, return_shape=True)(*args)
  jaxpr, (new_params, new_state, _, metrics) = closed
  _assert_float32(path, (new_params, new_state), "one update")
  _assert_float32(path, metrics, "one update (metrics)")
  assert jax.tree.structure((new_params, new_state)) == jax.tree.structure(args[:2])

  heavy = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name in HEAVY]
  bf16 = [e for e in heavy if _is_bf16(e)]
  allowed = F32_ALLOWED.get(method.config.model.name, lambda e, m: False)
  other = [e for e in heavy if e not in bf16 and not allowed(e, method)]
  assert bf16, f"{path}: no bf16 dot_general / conv_general_dilated in the update"
  assert not other, (f"{path}: {len(other)} of {len(heavy)} FLOP-heavy equations are not bf16:\n"
                     + "\n".join(_describe(e) for e in other))
  share = sum(map(_flops, bf16)) / sum(map(_flops, heavy))
  assert share > 0.5, f"{path}: only {share:.0%} of the update's matmul/conv FLOPs are bf16"


@pytest.mark.parametrize("path", _ids(sorted(RUN.values())))
def test_bf16_step_runs_and_float32_stays_float32(path, stand_ins):
  """One config per model: a jitted bf16 update step runs with finite float32 results, and the
  float32 default has no bf16 anywhere in its update."""
  method, method_f32, batch = _setup(path, stand_ins)
  params, model_state = meta.unbox(jax.jit(method.init)(jax.random.key(0), batch))
  args = (params, model_state, method.init_opt_state(params), batch, jax.random.key(1))
  new_params, new_state, _, metrics = jax.jit(method.update)(*args)
  assert metrics
  for name, value in metrics.items():
    assert value.dtype == jnp.float32 and np.isfinite(value), f"{path}: metric {name} = {value!r}"
  _assert_float32(path, (new_params, new_state), "one update")
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(new_params)), f"{path}: non-finite parameters"

  args_f32 = _abstract_args(method_f32, batch)
  bf16_in_f32 = [_describe(e) for e in _eqns(jax.make_jaxpr(method_f32.update)(*args_f32).jaxpr)
                 if any(getattr(v.aval, "dtype", None) == jnp.bfloat16 for v in (*e.invars, *e.outvars))]
  assert not bf16_in_f32, f"{path}: model.dtype float32 computes some of its update in bf16:\n" + "\n".join(
      bf16_in_f32[:10])
