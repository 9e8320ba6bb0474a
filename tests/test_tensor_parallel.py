"""Sharding by logical axes: data x tensor and fsdp x tensor meshes give one device's step, with the weights
really split; gradient accumulation gives the big batch's step; the mesh and rules are checked."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, smoke_config
from test_family_contract import _mnist, _text

from artjax.errors import ArtjaxError
from artjax.train import sharding

WORKER = str(ROOT / "tests" / "workers" / "tp_step.py")
TP_MESHES = ("data=2,tensor=2", "fsdp=2,tensor=2")


def run_meshes(out, config, meshes, *sets, extra=()):
  p = subprocess.run([sys.executable, WORKER, "--config", config, "--out", str(out), "--meshes", "1", *meshes,
                      *extra, "--set", *sets], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  return {m: np.load(out / f"{m}.npz") for m in ("1", *meshes)}


def assert_same_step(one, other):
  grads = [k for k in one.files if not k.startswith(("spec/", "shard/"))]
  assert any(k.startswith("metric/") for k in grads) and len(grads) > 5
  for k in grads:
    # SGD(lr=1): the parameter change is the gradient; sharded reductions only reorder float sums.
    np.testing.assert_allclose(other[k], one[k], rtol=2e-4, atol=1e-6, err_msg=k)


def split_on(rec, key, axis_name):
  """The mesh axes of `key`'s spec, and whether its local shard is smaller than the array."""
  spec, shard, full = str(rec[f"spec/{key}"]), tuple(rec[f"shard/{key}"]), rec[key].shape
  return axis_name in spec and shard != full and np.prod(shard) < np.prod(full)


def test_transformer_tensor_and_fsdp_parallel_match_one_device(tmp_path):
  corpus = _text(tmp_path / "corpus.txt", np.random.default_rng(0))
  meshes = (*TP_MESHES, "data=2,fsdp=2,tensor=2")
  recs = run_meshes(tmp_path / "out", "configs/text/shakespeare_char.py", meshes, f"data.path={corpus}")
  assert np.abs(recs["1"]["['block0']['fc']['kernel']"]).max() > 0, "gradients must be non-zero"
  for mesh in meshes:
    rec = recs[mesh]
    assert_same_step(recs["1"], rec)
    # Megatron layout: q/k/v and the first MLP layer split by output (heads, mlp), projections by input.
    for key in ("['block0']['attn']['qkv']['kernel']", "['block0']['attn']['proj']['kernel']",
                "['block0']['fc']['kernel']", "['block0']['fc_proj']['kernel']", "['wte']['embedding']"):
      assert split_on(rec, key, "tensor"), (mesh, key, str(rec[f"spec/{key}"]))
      assert ("fsdp" in str(rec[f"spec/{key}"])) == ("fsdp" in mesh), (mesh, key)
  assert str(recs["fsdp=2,tensor=2"]["spec/['block0']['fc']['kernel']"]).endswith("('fsdp', 'tensor')")


def test_unet_tensor_and_fsdp_parallel_match_one_device_and_samples_on_a_mesh(tmp_path):
  mnist = _mnist(tmp_path / "mnist", np.random.default_rng(0))
  meshes = ("fsdp=2,tensor=2",)  # data x tensor is the Transformer's test; one mesh keeps this one short
  recs = run_meshes(tmp_path / "out", "configs/diffusion/mnist_ddpm.py", meshes, f"data.dir={mnist}",
                    extra=("--sample_mesh", "fsdp=4"))
  # Sampling from a checkpoint restored onto a 4-device mesh: the weights split, the same images.
  sampled = np.load(tmp_path / "out" / "sampled.npz")
  assert any("fsdp" in str(s) for s in sampled["specs"]), sampled["specs"]
  np.testing.assert_allclose(sampled["many"], sampled["one"], atol=2e-4)
  assert sampled["one"].std() > 0
  for mesh in meshes:
    rec = recs[mesh]
    assert_same_step(recs["1"], rec)
    convs = [k[len("spec/"):] for k in rec.files if k.startswith("spec/") and k.endswith("['kernel']")
             and "Conv" in k]
    split = [k for k in convs if split_on(rec, k, "tensor")]
    assert len(split) >= len(convs) - 2, (mesh, [k for k in convs if k not in split])  # 1-channel in/out stay
    if "fsdp" in mesh:
      assert any("fsdp" in str(rec[f"spec/{k}"]) for k in convs)


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
  from artjax.train.loop import Trainer

  corpus = _text(tmp_path / "corpus.txt", np.random.default_rng(0))
  deltas, losses = [], []
  for k in (1, 4):
    config = smoke_config("configs/text/shakespeare_char.py:smoke", **{
        "data.path": str(corpus), "optimizer.name": "sgd", "optimizer.lr": 1.0, "optimizer.schedule": "constant",
        "optimizer.warmup_steps": 0, "optimizer.grad_clip_norm": 0.0, "grad_accum_steps": k})
    trainer = Trainer(config, tmp_path / f"w{k}")
    state = trainer.init_state()
    before = jax.device_get(state.params)
    new, metrics = trainer.step_fn(state, trainer.global_batch(0))
    deltas.append(jax.tree.map(lambda a, b: np.asarray(a) - b, jax.device_get(new.params), before))
    losses.append(float(metrics["loss"]))
  assert max(np.abs(x).max() for x in jax.tree.leaves(deltas[0])) > 0
  for other in deltas[1:]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=2e-4, atol=1e-6), deltas[0], other)
  np.testing.assert_allclose(losses[1:], losses[0], rtol=1e-5)


def test_gradient_accumulation_config_errors(tmp_path):
  from artjax.train.loop import Trainer

  with pytest.raises(ArtjaxError, match="grad_accum_steps=3"):
    Trainer(smoke_config(**{"grad_accum_steps": 3}), tmp_path / "a")  # batch 8 is not 3 micro-batches
  with pytest.raises(ArtjaxError, match="does not support grad_accum_steps"):
    Trainer(smoke_config(**{"grad_accum_steps": 2}), tmp_path / "b")  # GAN: two losses per step


def test_mesh_and_rules_are_checked():
  devices = jax.devices()[:1]
  mesh = sharding.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, devices)
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
  assert dict(sharding.make_mesh({"model": 1}, devices).shape)["tensor"] == 1  # the old name of tensor
  with pytest.raises(ArtjaxError, match="does not divide the 1 devices"):
    sharding.make_mesh({"tensor": 2}, devices)
  with pytest.raises(ArtjaxError, match="unknown mesh axis"):
    sharding.make_mesh({"pipeline": 1}, devices)
  with pytest.raises(ArtjaxError, match="unknown mesh axis 'tensr'"):
    sharding.rules_from_config({"rules": [("mlp", "tensr")]})
  with pytest.raises(ArtjaxError, match="unknown sharding strategy 'zero'"):
    sharding.state_shardings({}, mesh, {"strategy": "zero"})
  assert sharding.rules_from_config({"rules": [("mlp", ["fsdp", "tensor"])]}) == (("mlp", ("fsdp", "tensor")),)


def test_a_dimension_the_mesh_axis_does_not_divide_stays_whole():
  class FakeMesh:
    shape = {"data": 1, "fsdp": 2, "tensor": 4}

  spec = sharding.logical_strategy(("vocab", "embed"), (65, 16), FakeMesh, sharding.DEFAULT_RULES, 0)
  assert spec == jax.sharding.PartitionSpec(None, "fsdp")  # 65 tokens cannot be split 4 ways
  spec = sharding.logical_strategy(("embed", "mlp"), (16, 64), FakeMesh, sharding.DEFAULT_RULES, 0)
  assert spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  # Unnamed parameters: the shape rule over fsdp (largest divisible dimension), small ones whole.
  assert sharding.logical_strategy(None, (3, 3, 8, 16), FakeMesh, sharding.DEFAULT_RULES, 64) == \
      jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert sharding.logical_strategy(None, (7,), FakeMesh, sharding.DEFAULT_RULES, 64) == jax.sharding.PartitionSpec()
