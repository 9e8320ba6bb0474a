"""Device mesh and sharding rules: data parallel now, with room for FSDP / tensor-parallel axes.

The mesh has axes ('data', 'model'). Batches are split along 'data'. Parameters (and, by the same
shape-based rule, optimizer and EMA state) are replicated ('replicate') or, with 'fsdp', each large
array is split along its largest dimension divisible by the 'data' axis size (ZeRO-3 style).
'model' has size config.mesh.model (default 1) and is reserved for tensor-parallel rules.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from artjax.errors import ArtjaxError


def make_mesh(mesh_cfg=None) -> jax.sharding.Mesh:
  model = int(mesh_cfg.get("model", 1)) if mesh_cfg else 1
  n = jax.device_count()
  if n % model:
    raise ArtjaxError(f"mesh.model={model} does not divide the {n} devices")
  auto = (jax.sharding.AxisType.Auto,) * 2  # Plain jit propagation; explicit sharding types not needed.
  return jax.make_mesh((n // model, model), ("data", "model"), axis_types=auto)


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _fsdp_spec(shape, data_size: int, min_size: int):
  if data_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
    if shape[axis] % data_size == 0:
      spec = [None] * len(shape)
      spec[axis] = "data"
      return P(*spec)
  return P()


def state_shardings(abstract_state, mesh, strategy: str = "replicate", fsdp_min_size: int = 2 ** 14):
  """NamedShardings for every leaf of an abstract (eval_shape) train state."""
  if strategy not in ("replicate", "fsdp"):
    raise ArtjaxError(f"unknown sharding.strategy {strategy!r}; known: replicate, fsdp")
  data_size = mesh.shape["data"]

  def rule(leaf):
    if strategy == "replicate" or not getattr(leaf, "shape", ()):
      return NamedSharding(mesh, P())
    return NamedSharding(mesh, _fsdp_spec(leaf.shape, data_size, fsdp_min_size))

  return jax.tree.map(rule, abstract_state)
