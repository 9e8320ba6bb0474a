"""Runs one SGD(lr=1) train step of the smoke DCGAN and saves -grad (= param delta) and metrics to an .npz.

Used by tests/test_sharding.py to compare 1 device, N emulated devices and N processes.
  python tests/workers/one_step.py --devices 4 --out f.npz [--strategy fsdp]
      [--coordinator 127.0.0.1:PORT --num_processes 2 --process_id I]
"""

import argparse
import os
import pathlib
import sys
import tempfile

p = argparse.ArgumentParser()
p.add_argument("--devices", type=int, default=1)
p.add_argument("--out", required=True)
p.add_argument("--strategy", default="replicate")
p.add_argument("--coordinator")
p.add_argument("--num_processes", type=int, default=1)
p.add_argument("--process_id", type=int, default=0)
args = p.parse_args()
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

import jax  # noqa: E402
import numpy as np  # noqa: E402

if args.coordinator:
  jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                             process_id=args.process_id)
from jax.experimental import multihost_utils  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from conftest import smoke_config  # noqa: E402

from artjax.train.loop import Trainer  # noqa: E402

config = smoke_config(**{"optimizer.name": "sgd", "optimizer.lr": 1.0, "sharding.strategy": args.strategy,
                                "sharding.fsdp_min_size": 64})
trainer = Trainer(config, tempfile.mkdtemp())
assert jax.device_count() == args.devices * args.num_processes
state = trainer.init_state()
gather = lambda t: jax.tree.map(np.asarray, multihost_utils.process_allgather(t, tiled=True))  # noqa: E731
before = gather(state.params)
new, metrics = trainer.step_fn(state, trainer.global_batch(0))
after = gather(new.params)
leaves = jax.tree_util.tree_flatten_with_path(jax.tree.map(lambda a, b: a - b, after, before))[0]
out = {jax.tree_util.keystr(k): v for k, v in leaves}
out.update({f"metric/{k}": np.asarray(v) for k, v in jax.device_get(metrics).items()})
shardings = {str(s.spec) for s in jax.tree.leaves(trainer.state_sharding)}
if jax.process_index() == 0:
  np.savez(args.out, **out)
  print("devices", jax.device_count(), "processes", jax.process_count(), "specs", sorted(shardings))
