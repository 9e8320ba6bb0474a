"""A Flax port of pytorch-fid's FIDInceptionV3: 2048-d pool3 features and 1008 logits for standard FID / IS.

Weights come from a user-supplied .npz of the PyTorch state dict (tools/convert_inception.py makes it
from pytorch-fid's pt_inception-2015-12-05-6726825d.pth): array names are the PyTorch parameter names
in PyTorch layouts, and `load_npz` maps each one onto this module. Architecture as pytorch-fid's
(torchvision's Inception3 with the FID blocks A, C, E_1, E_2: average pools exclude padding; Mixed_7c
max-pools): images are resized to 299x299 (bilinear, half-pixel centres, no antialiasing, as
F.interpolate(align_corners=False)) and scaled to [-1, 1].
"""

import hashlib
import pathlib

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from artjax.errors import ArtjaxError
from artjax.eval.features import FeatureNet

NUM_CLASSES = 1008


def _pad(p):
  ph, pw = (p, p) if isinstance(p, int) else p
  return ((ph, ph), (pw, pw))


class BasicConv2d(nn.Module):
  """conv (no bias) -> BatchNorm(eps=1e-3, inference statistics) -> ReLU, as torchvision's BasicConv2d."""
  features: int
  kernel: tuple[int, int] | int
  stride: int = 1
  padding: tuple[int, int] | int = 0

  @nn.compact
  def __call__(self, x):
    k = (self.kernel, self.kernel) if isinstance(self.kernel, int) else self.kernel
    x = nn.Conv(self.features, k, (self.stride, self.stride), padding=_pad(self.padding), use_bias=False,
                name="conv")(x)
    return nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x))


def _avg3(x):  # the FID blocks' pool: 3x3, stride 1, padding 1, padding not counted
  return nn.avg_pool(x, (3, 3), (1, 1), _pad(1), count_include_pad=False)


def _max3s2(x):
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, 1, name="branch1x1")(x)
    b5 = BasicConv2d(64, 5, padding=2, name="branch5x5_2")(BasicConv2d(48, 1, name="branch5x5_1")(x))
    b3 = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, 1, name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, 3, stride=2, name="branch3x3")(x)
    bd = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, 3, stride=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max3s2(x)], -1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, 1, name="branch1x1")(x)
    b7 = BasicConv2d(c7, 1, name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, 1, name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, 1, name="branch_pool")(_avg3(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, 1, name="branch3x3_1")(x)
    b3 = BasicConv2d(320, 3, stride=2, name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, 1, name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, 3, stride=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max3s2(x)], -1)


class InceptionE(nn.Module):
  max_pool: bool = False  # FIDInceptionE_2 (Mixed_7c) max-pools in its pool branch; E_1 average-pools

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, 1, name="branch1x1")(x)
    b3 = BasicConv2d(384, 1, name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
    bd = BasicConv2d(448, 1, name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, 3, padding=1, name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
    pooled = nn.max_pool(x, (3, 3), (1, 1), _pad(1)) if self.max_pool else _avg3(x)
    bp = BasicConv2d(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class FIDInceptionV3(nn.Module):
  """x (B, H, W, 3) in [-1, 1], H, W >= 75 -> (pool3 features (B, 2048), logits (B, 1008))."""

  @nn.compact
  def __call__(self, x):
    x = BasicConv2d(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv2d(32, 3, name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = _max3s2(x)
    x = BasicConv2d(80, 1, name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, 3, name="Conv2d_4a_3x3")(x)
    x = _max3s2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(False, name="Mixed_7b")(x)
    x = InceptionE(True, name="Mixed_7c")(x)
    pool = x.mean((1, 2))
    return pool, nn.Dense(NUM_CLASSES, name="fc")(pool)


# (PyTorch module kind, attribute) -> (Flax collection, Flax leaf, transpose from the PyTorch layout)
_LEAVES = {("conv", "weight"): ("params", "kernel", (2, 3, 1, 0)),  # OIHW -> HWIO
           ("bn", "weight"): ("params", "scale", None), ("bn", "bias"): ("params", "bias", None),
           ("bn", "running_mean"): ("batch_stats", "mean", None), ("bn", "running_var"): ("batch_stats", "var", None),
           ("fc", "weight"): ("params", "kernel", (1, 0)), ("fc", "bias"): ("params", "bias", None)}
_TO_TORCH = {(c, kind, leaf): (attr, perm) for (kind, attr), (c, leaf, perm) in _LEAVES.items()}
_IGNORED = ("num_batches_tracked", "AuxLogits.")  # not used by the FID network


def _flax_path(torch_name: str):
  """'Mixed_5b.branch1x1.conv.weight' -> ('params', ('Mixed_5b', 'branch1x1', 'conv', 'kernel'), perm)."""
  parts = tuple(torch_name.split("."))
  if len(parts) < 2 or parts[-2:] not in _LEAVES:
    return None
  collection, leaf, perm = _LEAVES[parts[-2:]]
  return collection, parts[:-1] + (leaf,), perm


def abstract_variables():
  return jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))


def to_torch_arrays(variables) -> dict:
  """The inverse of `load_npz`: Flax variables -> {PyTorch name: array in PyTorch layout}."""
  out = {}
  for collection in ("params", "batch_stats"):
    for path, value in flax.traverse_util.flatten_dict(flax.core.unfreeze(variables[collection])).items():
      attr, perm = _TO_TORCH[(collection, path[-2], path[-1])]
      arr = np.asarray(value)
      out[".".join(path[:-1] + (attr,))] = arr.transpose(np.argsort(perm)) if perm else arr
  return out


def load_npz(path) -> dict:
  """Flax variables {params, batch_stats} from an .npz of the PyTorch state dict; every leaf must be present."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise ArtjaxError(f"Inception weights {str(path)!r} not found (make them with tools/convert_inception.py)")
  abstract = abstract_variables()
  expected = {c: flax.traverse_util.flatten_dict(abstract[c]) for c in ("params", "batch_stats")}
  found = {c: {} for c in expected}
  try:
    arrays = np.load(path)
  except (OSError, ValueError) as e:
    raise ArtjaxError(f"cannot read Inception weights {str(path)!r}: {e}") from None
  with arrays:
    for name in arrays.files:
      if any(s in name for s in _IGNORED):
        continue
      mapped = _flax_path(name)
      if mapped is None or mapped[1] not in expected[mapped[0]]:
        raise ArtjaxError(f"{str(path)!r} has {name!r}, which FIDInceptionV3 lacks: is it pytorch-fid's "
                          f"pt_inception-2015-12-05 state dict?")
      collection, key, perm = mapped
      arr = arrays[name].astype(np.float32)
      arr = arr.transpose(perm) if perm else arr
      want = expected[collection][key].shape
      if arr.shape != want:
        raise ArtjaxError(f"{str(path)!r}: {name!r} has shape {arr.shape} after layout change, expected {want}")
      found[collection][key] = arr
  missing = [".".join(k) for c in expected for k in expected[c] if k not in found[c]]
  if missing:
    raise ArtjaxError(f"{str(path)!r} lacks {len(missing)} FIDInceptionV3 weight(s), e.g. {missing[0]!r}")
  return {c: flax.traverse_util.unflatten_dict(found[c]) for c in found}


def file_checksum(path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


class InceptionFeatures(FeatureNet):
  """FIDInceptionV3 from an .npz: 2048-d pool3 features, 1008 logits, inputs 299x299 RGB in [-1, 1]."""

  name = "fid_inception_v3"
  image_size = 299
  channels = 3
  value_range = (-1.0, 1.0)
  antialias = False  # F.interpolate(mode="bilinear", align_corners=False) has none

  def __init__(self, variables, checksum: str, workdir=None, batch: int = 500):
    super().__init__(batch)
    self.module = FIDInceptionV3()
    self.weights = variables
    self.checksum = checksum
    self.workdir = None if workdir is None else pathlib.Path(workdir)

  @classmethod
  def from_path(cls, path, batch: int = 500):
    variables = load_npz(path)
    return cls(variables, file_checksum(path), pathlib.Path(path).parent, batch)

  def _apply(self, weights, images):
    return self.module.apply(weights, images)
