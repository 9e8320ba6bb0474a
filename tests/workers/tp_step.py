"""One SGD(lr=1) train step of a smoke config on several meshes of 8 emulated CPU devices, in one process.

For each mesh (e.g. 'data=2,tensor=2'), saves the parameter deltas (= -gradients), the metrics and each
parameter's PartitionSpec and local shard shape to OUT/<mesh>.npz; the mesh '1' is one device.
  python tests/workers/tp_step.py --config configs/text/shakespeare_char.py --out DIR \
      --meshes 1 data=2,tensor=2 fsdp=2,tensor=2 [--set data.path=corpus.txt ...] [--accum 2]
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile

p = argparse.ArgumentParser()
p.add_argument("--config", required=True)
p.add_argument("--out", required=True)
p.add_argument("--meshes", nargs="+", required=True)
p.add_argument("--set", nargs="*", default=[])
p.add_argument("--strategy", default="logical")
p.add_argument("--sample_mesh", default="", help="also restore a checkpoint onto this 4-device mesh and sample")
args = p.parse_args()
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)  # compile time dominates; the maths is the same

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from conftest import smoke_config  # noqa: E402

from artjax.train.loop import Trainer  # noqa: E402

overrides = dict(kv.split("=", 1) for kv in args.set)
overrides = {k: json.loads(v) if v[:1] in "0123456789-[{tf" else v for k, v in overrides.items()}
out = pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)
for mesh_arg in args.meshes:
  sizes = {} if mesh_arg == "1" else {k: int(v) for k, v in (kv.split("=") for kv in mesh_arg.split(","))}
  n = int(np.prod(list(sizes.values()))) if sizes else 1
  mesh = {f"mesh.{a}": sizes.get(a, 1) for a in ("data", "fsdp", "tensor")}
  config = smoke_config(f"{args.config}:smoke", **{
      "optimizer.name": "sgd", "optimizer.lr": 1.0, "optimizer.schedule": "constant", "optimizer.warmup_steps": 0,
      "optimizer.grad_clip_norm": 0.0, "sharding.strategy": args.strategy, "sharding.fsdp_min_size": 64,
      **mesh, **overrides})
  trainer = Trainer(config, tempfile.mkdtemp(), devices=jax.devices()[:n])
  state = trainer.init_state()
  before = jax.device_get(state.params)
  compiled, _ = trainer.compile(state)
  new, metrics = compiled(state, trainer.global_batch(0))
  after = jax.device_get(new.params)
  record = {}
  for (path, a), b, arr in zip(jax.tree_util.tree_flatten_with_path(after)[0], jax.tree.leaves(before),
                               jax.tree.leaves(new.params)):
    key = jax.tree_util.keystr(path)
    record[key] = np.asarray(a) - np.asarray(b)
    record[f"spec/{key}"] = np.array(str(arr.sharding.spec))
    record[f"shard/{key}"] = np.array(arr.addressable_shards[0].data.shape)
  record.update({f"metric/{k}": np.asarray(v) for k, v in jax.device_get(metrics).items()})
  np.savez(out / f"{mesh_arg}.npz", **record)
  print("mesh", mesh_arg, dict(trainer.mesh.shape), "devices", n, flush=True)

if args.sample_mesh:
  # Train-side checkpoint of the 1-device run, restored onto a mesh for sampling: same samples, weights split.
  from artjax.inference import Sampler
  from artjax.train import sharding as sh
  from artjax.train.checkpoint import Checkpointer

  config = smoke_config(f"{args.config}:smoke", **overrides)
  workdir = tempfile.mkdtemp()
  trainer = Trainer(config, workdir, devices=jax.devices()[:1])
  ckpt = Checkpointer(workdir)
  ckpt.save(0, trainer.init_state(), config)
  ckpt.wait()
  ckpt.close()
  one = Sampler.from_workdir(workdir).sample(2, seed=0)
  mesh = sh.make_mesh(sh.parse_mesh(args.sample_mesh), jax.devices()[:4])
  split = Sampler.from_workdir(workdir, mesh=mesh, shard_min_size=64)
  many = split.sample(2, seed=0)
  specs = sorted({str(a.sharding.spec) for a in jax.tree.leaves(split.params)})
  np.savez(out / "sampled.npz", one=np.asarray(one.items, np.float32), many=np.asarray(many.items, np.float32),
           specs=np.array(specs))
  print("sampled on", dict(mesh.shape), specs, flush=True)
