"""Reference statistics: feature mean/covariance (and a feature subset) of a dataset split, cached on disk.

Cache layout: <stats_dir>/<key>.npz (mu, sigma, features) + <key>.json (the manifest). The key hashes
everything the statistics depend on (dataset, split, count, preprocessing, feature net checkpoint), so
changing any of them misses the cache instead of silently reusing stale numbers.
"""

import datetime
import hashlib
import json
import os
import pathlib

import numpy as np

from artjax import data
from artjax.errors import ArtjaxError
from artjax.eval.metrics import gaussian_stats

MAX_KEPT_FEATURES = 10_000  # reference features kept for precision/recall
SUBSET_SEED = 0

# Source-specific fields of config.data that change which images a split holds.
_SOURCE_FIELDS = ("tfds_name", "tfds_data_dir", "image_key")


def _plain(v):
  if isinstance(v, (tuple, list)):
    return [_plain(x) for x in v]
  if hasattr(v, "to_dict"):
    return v.to_dict()
  return v


def load_split(data_cfg, split: str, num: int | None = None):
  """(images float32 (N, H, W, C) in data_cfg.value_range, labels (N,) or None) of `split`, no augmentation.

  `num` (< the split size) takes a fixed random subset, so a class-sorted source is not truncated to
  a few classes.
  """
  source = data.make_source(data_cfg, split)
  preprocess = data.make_preprocess({**_plain_cfg(data_cfg), "random_flip": False})
  idx = subset_indices(len(source), num)
  rows = [preprocess(source[int(i)], 0) for i in idx]
  images = np.stack([r["image"] for r in rows])
  labels = np.array([r["label"] for r in rows], np.int32) if "label" in rows[0] else None
  return images, labels


def subset_indices(n: int, num: int | None):
  if num is None or num >= n:
    return np.arange(n)
  if num <= 0:
    raise ArtjaxError(f"the number of reference examples must be positive, got {num}")
  return np.sort(np.random.default_rng(SUBSET_SEED).permutation(n)[:num])


def _plain_cfg(data_cfg) -> dict:
  return {k: _plain(v) for k, v in data_cfg.items()}


def manifest_for(data_cfg, split: str, n: int, feature_net, feature_dim: int) -> dict:
  """The identity of a reference: what `key()` hashes (all but `created` and results)."""
  cfg = _plain_cfg(data_cfg)
  d = cfg.get("dir") or ""
  return {
      "dataset": cfg["name"],
      "dir": str(pathlib.Path(os.path.expanduser(d)).absolute()) if d else "",
      "split": split,
      "n": int(n),
      # Effective values (make_preprocess's defaults filled in) plus any source-specific fields set.
      "preprocessing": {"image_size": cfg.get("image_size"), "channels": cfg.get("channels"),
                        "value_range": _plain(cfg.get("value_range", (-1.0, 1.0))),
                        "background": _plain(cfg.get("background", (255, 255, 255))),
                        **{k: cfg[k] for k in _SOURCE_FIELDS if cfg.get(k) not in (None, "")}},
      "feature_net": feature_net.describe(),
      "feature_dim": int(feature_dim),
  }


_NOT_KEYED = ("created", "classifier_accuracy", "num_features_kept")


def key(manifest: dict) -> str:
  ident = {k: v for k, v in manifest.items() if k not in _NOT_KEYED}
  return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def default_stats_dir(feature_net) -> pathlib.Path:
  if feature_net.workdir is None:
    raise ArtjaxError(f"feature net {feature_net.name!r} has no directory for its statistics: pass --stats_dir")
  return pathlib.Path(feature_net.workdir) / "fid_stats"


def reference_stats(data_cfg, feature_net, stats_dir=None, num: int | None = None, split: str = "test",
                    log=print) -> dict:
  """{mu, sigma, features, manifest, key, cached} of `split` under `data_cfg`'s preprocessing.

  Computed once per key; later calls load the cached .npz. The classifier's own test accuracy (when
  the net is a classifier) is computed with it and stored in the manifest.
  """
  stats_dir = pathlib.Path(stats_dir) if stats_dir else default_stats_dir(feature_net)
  source_len = len(data.make_source(data_cfg, split))
  n = source_len if num is None else min(num, source_len)
  manifest = manifest_for(data_cfg, split, n, feature_net, feature_net.feature_dim())
  k = key(manifest)
  npz, js = stats_dir / f"{k}.npz", stats_dir / f"{k}.json"
  if npz.is_file() and js.is_file():
    try:
      with np.load(npz) as z:
        out = {name: z[name] for name in ("mu", "sigma", "features")}
      return {**out, "manifest": json.loads(js.read_text()), "key": k, "cached": True}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
      log(f"reference statistics {str(npz)!r} are unreadable ({type(e).__name__}); recomputing")
  log(f"computing reference statistics of {manifest['dataset']} {split} (n={n}) with {feature_net.name} "
      f"step {feature_net.step} -> {npz}")
  images, _ = load_split(data_cfg, split, num)
  feats, _ = feature_net(images, tuple(data_cfg.get("value_range", (-1.0, 1.0))))
  mu, sigma = gaussian_stats(feats)
  kept = feats[subset_indices(len(feats), MAX_KEPT_FEATURES)]
  manifest["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  manifest["num_features_kept"] = len(kept)
  if hasattr(feature_net, "accuracy"):
    manifest["classifier_accuracy"] = feature_net.accuracy("test")
  stats_dir.mkdir(parents=True, exist_ok=True)
  # Write to temporary names and rename: a concurrent or killed evaluator never sees half a file.
  tmp_npz, tmp_js = stats_dir / f".{k}.{os.getpid()}.tmp.npz", stats_dir / f".{k}.{os.getpid()}.tmp.json"
  np.savez(tmp_npz, mu=mu, sigma=sigma, features=kept)
  tmp_js.write_text(json.dumps(manifest, indent=2))
  os.replace(tmp_npz, npz)
  os.replace(tmp_js, js)
  return {"mu": mu, "sigma": sigma, "features": kept, "manifest": manifest, "key": k, "cached": False}
