"""Device mesh and sharding strategies: data parallelism, FSDP and tensor parallelism by logical axes.

The mesh has three axes, outermost first (`config.mesh`, sizes; `data: -1` takes the devices left):
  data    pure data parallelism: parameters replicated, the batch split (spans hosts / slices),
  fsdp    the batch split too, parameters sharded (ZeRO-3): all-gathered for the forward pass,
  tensor  tensor (model) parallelism: heads, MLP hidden units, vocabulary, conv output channels split.
`tensor` is innermost, so a tensor-parallel group sits on the fastest links (NVLink, ICI).

Parameters carry *logical* axis names (`embed`, `mlp`, `heads`, `kv`, `vocab`, `conv_in`, `conv_out`, ...)
through Flax's logical partitioning (`nn.with_logical_partitioning` in the model files). A table of rules in
the config (`config.sharding.rules`, a list of (logical name, mesh axis or axes or None) pairs, MaxText's
`logical_axis_rules`) maps them onto mesh axes. Parameters without names (BatchNorm statistics, models
that do not name their weights) fall back to a shape rule: each large array is split along its largest
dimension divisible by the `fsdp` axes. A dimension that a mesh axis does not divide stays whole.

Strategies by name (`config.sharding.strategy`, registry `STRATEGIES`):
  replicate  every parameter on every device (the batch is still split over data and fsdp),
  fsdp       the shape rule for every parameter, over all batch axes (data and fsdp): ZeRO-3 everywhere,
  logical    the rules table for named parameters, the shape rule over `fsdp` for the rest.
Optimizer state and EMA weights are sharded like the parameters they mirror (their leaves carry the
same logical names, since optax builds them from the named parameters).
"""

import math

import flax.linen as nn
import jax
from flax.core import meta
from jax.sharding import NamedSharding, PartitionSpec as P

from artjax.errors import ArtjaxError
from artjax.registry import Registry

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# MaxText-style defaults: the batch over data and fsdp, weights' model dimension over fsdp, the
# dimensions that split cleanly between devices without communication inside a layer over tensor.
DEFAULT_RULES = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("conv_in", "fsdp"),
    ("conv_out", "tensor"),
    ("length", None),
    ("layers", None),  # the stacked axis of scanned layers
)

STRATEGIES = Registry("sharding strategy")


def make_mesh(mesh_cfg=None, devices=None) -> jax.sharding.Mesh:
  """A ('data', 'fsdp', 'tensor') mesh over all devices (or `devices`).

  mesh_cfg: {'data': int (-1: the rest), 'fsdp': int, 'tensor': int}; the older name `model` means
  `tensor`. Raises ArtjaxError when the sizes do not multiply to the device count.
  """
  cfg = dict(mesh_cfg or {})
  unknown = set(cfg) - set(AXES) - {"model"}
  if unknown:
    raise ArtjaxError(f"unknown mesh axis/axes {sorted(unknown)}; known: {', '.join(AXES)}")
  if "model" in cfg:
    if cfg.get("tensor", 1) not in (1, cfg["model"]):
      raise ArtjaxError("config.mesh sets both `model` and `tensor` (model is the old name of tensor)")
    cfg["tensor"] = cfg.pop("model")
  devices = jax.devices() if devices is None else devices
  n = len(devices)
  sizes = {a: int(cfg.get(a, -1 if a == "data" else 1)) for a in AXES}
  if sum(v == -1 for v in sizes.values()) > 1 or any(v == 0 or v < -1 for v in sizes.values()):
    raise ArtjaxError(f"config.mesh sizes must be positive (one of them may be -1), got {sizes}")
  known = math.prod(v for v in sizes.values() if v != -1)
  if n % known:
    raise ArtjaxError(f"config.mesh {sizes} does not divide the {n} devices")
  sizes = {a: (n // known if v == -1 else v) for a, v in sizes.items()}
  if math.prod(sizes.values()) != n:
    raise ArtjaxError(f"config.mesh {sizes} needs {math.prod(sizes.values())} devices, there are {n}")
  auto = (jax.sharding.AxisType.Auto,) * len(AXES)  # plain jit propagation, as GSPMD
  return jax.make_mesh(tuple(sizes[a] for a in AXES), AXES, axis_types=auto, devices=devices)


def parse_mesh(text: str) -> dict:
  """'fsdp=4,tensor=2' -> {'fsdp': 4, 'tensor': 2} (the CLIs' --mesh); ArtjaxError naming a bad entry."""
  out = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    name, _, size = part.partition("=")
    if name not in AXES and name != "model" or not size.lstrip("-").isdigit():
      raise ArtjaxError(f"--mesh entries are AXIS=SIZE with AXIS in {', '.join(AXES)}, got {part!r}")
    out[name] = int(size)
  return out


def batch_sharding(mesh) -> NamedSharding:
  """Examples split over every batch axis of the mesh (data x fsdp)."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_size_divisor(mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def rules_from_config(shard_cfg) -> tuple:
  """The logical-axis rules of `config.sharding.rules` (default DEFAULT_RULES), as Flax wants them."""
  rules = shard_cfg.get("rules", None) if shard_cfg else None
  if rules is None:
    return DEFAULT_RULES
  out = []
  for rule in rules:
    if len(rule) != 2 or not isinstance(rule[0], str):
      raise ArtjaxError(f"config.sharding.rules entries are (logical name, mesh axis/axes/None), got {rule!r}")
    name, axes = rule
    axes_t = (axes,) if isinstance(axes, str) or axes is None else tuple(axes)
    bad = [a for a in axes_t if a is not None and a not in AXES]
    if bad:
      raise ArtjaxError(f"config.sharding.rules maps {name!r} to unknown mesh axis {bad[0]!r}; known: {AXES}")
    out.append((name, axes if isinstance(axes, str) or axes is None else tuple(axes)))
  return tuple(out)


def _fits(spec, shape, mesh) -> P:
  """`spec` with every mesh axis that does not divide its dimension dropped."""
  out = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    names = tuple(a for a in names if mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in names)
    out.append(None if not names or dim % size else (names[0] if len(names) == 1 else names))
  return P(*out)


def shape_rule(shape, mesh, axes, min_size: int) -> P:
  """FSDP by shape: the largest dimension that the `axes` divide is split over them (small arrays whole)."""
  axes = tuple(a for a in axes if mesh.shape[a] > 1)
  size = math.prod(mesh.shape[a] for a in axes)
  if size == 1 or math.prod(shape) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % size == 0:
      spec = [None] * len(shape)
      spec[dim] = axes[0] if len(axes) == 1 else axes
      return P(*spec)
  return P()


@STRATEGIES.register("replicate")
def replicate_strategy(names, shape, mesh, rules, min_size):
  return P()


@STRATEGIES.register("fsdp")
def fsdp_strategy(names, shape, mesh, rules, min_size):
  return shape_rule(shape, mesh, BATCH_AXES, min_size)


@STRATEGIES.register("logical")
def logical_strategy(names, shape, mesh, rules, min_size):
  if names is None:
    return shape_rule(shape, mesh, ("fsdp",), min_size)
  return _fits(nn.logical_to_mesh_axes(names, rules), shape, mesh)


def _leaf_names(x):
  if isinstance(x, meta.AxisMetadata):
    return tuple(x.names), x.unbox().shape
  return None, getattr(x, "shape", ())


def state_shardings(abstract_state, mesh, shard_cfg=None):
  """NamedShardings for every leaf of an abstract (eval_shape) train state, *unboxed* in structure.

  `abstract_state` may hold Flax `LogicallyPartitioned` boxes (from `nn.with_logical_partitioning`);
  the result has the structure of `flax.core.meta.unbox(abstract_state)`. Raises ArtjaxError for an
  unknown strategy or a bad rules table.
  """
  shard_cfg = shard_cfg or {}
  strategy = STRATEGIES.get(shard_cfg.get("strategy", "logical"))
  rules = rules_from_config(shard_cfg)
  min_size = int(shard_cfg.get("fsdp_min_size", 2 ** 14))

  def rule(leaf):
    names, shape = _leaf_names(leaf)
    if not shape:
      return NamedSharding(mesh, P())
    return NamedSharding(mesh, strategy(names, shape, mesh, rules, min_size))

  return jax.tree.map(rule, abstract_state, is_leaf=lambda x: isinstance(x, meta.AxisMetadata))
