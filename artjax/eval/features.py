"""Feature nets for FID-style metrics: images in a generator's format -> (features, logits), jitted and batched.

A net carries its own data format (image size, channels, value range); `__call__` adapts images from
the generative model's value range to it (linear rescale, grey <-> RGB, jax.image.resize), so the
reference and the samples pass through the same adaptation.
"""

import hashlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from artjax.errors import ArtjaxError


def checkpoint_checksum(step_dir) -> str:
  """sha256 over the relative paths and contents of every file under one checkpoint step directory."""
  root = pathlib.Path(step_dir)
  h = hashlib.sha256()
  files = sorted(p for p in root.rglob("*") if p.is_file())
  if not files:
    raise ArtjaxError(f"checkpoint {str(root)!r} holds no files")
  for p in files:
    h.update(p.relative_to(root).as_posix().encode() + b"\0")
    with open(p, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    h.update(b"\0")
  return h.hexdigest()


def adapt_images(x, value_range, image_size: int, channels: int, net_range, antialias: bool = True):
  """Images (B, H, W, C) in `value_range` -> the net's (B, S, S, channels) in `net_range` (traceable)."""
  lo, hi = value_range
  x = (x.astype(jnp.float32) - lo) / (hi - lo)  # [0, 1]
  if x.shape[-1] == 3 and channels == 1:
    x = x @ jnp.array([0.299, 0.587, 0.114], jnp.float32)[:, None]  # ITU-R 601 luma, as PIL's convert("L")
  elif x.shape[-1] == 1 and channels == 3:
    x = jnp.repeat(x, 3, axis=-1)
  elif x.shape[-1] != channels:
    raise ArtjaxError(f"cannot adapt {x.shape[-1]}-channel images to a {channels}-channel feature net")
  if x.shape[1:3] != (image_size, image_size):
    x = jax.image.resize(x, (x.shape[0], image_size, image_size, channels), "linear", antialias=antialias)
  nlo, nhi = net_range
  return x * (nhi - nlo) + nlo


def quantize(images, value_range):
  """Clips to `value_range` and rounds to its 256 uint8 levels: samples scored as if saved as images,
  as the (uint8-derived) reference data is."""
  lo, hi = value_range
  x = np.clip(np.asarray(images, np.float32), lo, hi)
  return (np.round((x - lo) * (255.0 / (hi - lo))) * ((hi - lo) / 255.0) + lo).astype(np.float32)


class FeatureNet:
  """Subclasses set name, checksum, step, image_size, channels, value_range, `weights` (a pytree) and
  `_apply(weights, images) -> (features, logits)`."""

  name: str
  checksum: str
  step: int | None = None
  image_size: int
  channels: int
  value_range: tuple[float, float]
  workdir: pathlib.Path | None = None  # where its default stats dir lives
  antialias: bool = True  # when downsizing

  def __init__(self, batch: int = 500):
    self.batch = batch
    self._jitted = {}

  weights = None

  def _apply(self, weights, images):
    raise NotImplementedError

  def _fn(self, value_range):
    key = tuple(float(v) for v in value_range)
    if key not in self._jitted:  # weights are an argument, not constants baked into the program
      self._jitted[key] = jax.jit(lambda w, x: self._apply(
          w, adapt_images(x, key, self.image_size, self.channels, self.value_range, self.antialias)))
    return self._jitted[key]

  def __call__(self, images, value_range):
    """images (N, H, W, C) in `value_range` -> (features (N, D), logits (N, K)) as float32 numpy arrays."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or not len(images):
      raise ArtjaxError(f"feature net {self.name!r} needs images (N, H, W, C), got shape {images.shape}")
    fn = self._fn(value_range)
    batch = min(self.batch, len(images))
    feats, logits = [], []
    for s in range(0, len(images), batch):
      chunk = images[s:s + batch]
      n = len(chunk)
      if n < batch:  # pad the last chunk: one compiled shape
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, 0)])
      f, l = jax.device_get(fn(self.weights, chunk))
      feats.append(np.asarray(f[:n], np.float32))
      logits.append(np.asarray(l[:n], np.float32))
    return np.concatenate(feats), np.concatenate(logits)

  def feature_dim(self) -> int:
    x = jax.ShapeDtypeStruct((1, self.image_size, self.image_size, self.channels), jnp.float32)
    return int(jax.eval_shape(self._apply, self.weights, x)[0].shape[1])

  def describe(self) -> dict:
    """Identity fields for manifests and metric lines."""
    return {"name": self.name, "step": self.step, "checksum": self.checksum}


class ClassifierFeatures(FeatureNet):
  """Penultimate activations and logits of an artjax classifier run (method 'classifier')."""

  def __init__(self, config, method, params, model_state, step, checksum, workdir, batch: int = 500):
    super().__init__(batch)
    self.config, self.method, self.weights = config, method, (params, model_state)
    self.step, self.checksum, self.workdir = step, checksum, pathlib.Path(workdir)
    self.name = f"classifier:{config.data.name}"
    self.image_size = int(config.data.image_size)
    self.channels = int(config.data.channels)
    self.value_range = tuple(float(v) for v in config.data.get("value_range", (-1.0, 1.0)))
    self.num_classes = int(config.model.get("num_classes", 10))

  @classmethod
  def from_workdir(cls, workdir, step=None, batch: int = 500):
    from artjax import methods
    from artjax.checkpoint import open_for_reading, restore_model, sampling_params

    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
      raise ArtjaxError(f"feature net workdir {str(workdir)!r} does not exist (train one with "
                        f"configs/eval/classifier_mnist.py)")
    ckpt = open_for_reading(workdir)
    try:
      steps = ckpt.all_steps()
      directory = ckpt.directory
    finally:
      ckpt.close()
    if not steps:
      raise ArtjaxError(f"feature net workdir {str(workdir)!r} has no checkpoints")
    step = max(steps) if step is None else step
    config, items, step = restore_model(workdir, step)
    method = methods.build(config)
    params, model_state = sampling_params(items["params"], items["ema_params"]), items["model_state"]
    if not hasattr(method, "features"):
      raise ArtjaxError(f"feature net {str(workdir)!r} is not a classifier run (its method is "
                        f"{config.method.name!r}); train configs/eval/classifier_mnist.py")
    return cls(config, method, params, model_state, step, checkpoint_checksum(directory / str(step)),
               workdir, batch)

  def _apply(self, weights, images):
    return self.method.features(*weights, images)

  def accuracy(self, split: str = "test") -> float:
    """Top-1 accuracy on `split` of the classifier's own dataset, in its own preprocessing."""
    from artjax.eval.reference import load_split

    images, labels = load_split(self.config.data, split)
    if labels is None:
      raise ArtjaxError(f"{self.config.data.name} split {split!r} has no labels")
    _, logits = self(images, self.value_range)
    return float(np.mean(np.argmax(logits, -1) == labels))
