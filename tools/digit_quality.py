r"""Interim quality figures for generated MNIST-style digits, in the feature space of an MLP classifier.

  python -m artjax.sample --workdir runs/mnist_dcgan --num 10000 --out /tmp/samples.npy
  python tools/digit_quality.py --data_dir /path/to/mnist --samples /tmp/samples.npy

Trains scikit-learn's MLPClassifier (784-256-10, ~98% test accuracy) on the MNIST train split, then
reports for the samples and, as the reference, for the MNIST test split:
  fd        Frechet distance between the 256-d hidden features of 5,000 of the set and a fixed half
            of the test split (FID's formula in this classifier's space; not comparable with
            Inception FID); the reference row is the other half of the test split, the floor at n=5,000,
  is        Inception-Score-style exp(E_x KL(p(y|x) || p(y))) (10 = confident and balanced),
  conf      mean max-probability (sharpness), and
  classes   share of samples per predicted class (diversity / mode coverage).
The project's full evaluation (own CNN feature net, FID/IS/precision-recall) is planned as
`artjax.evaluate` with the image families.
"""

import argparse
import json

import ml_collections
import numpy as np
from scipy import linalg
from sklearn.neural_network import MLPClassifier

from artjax.data.sources import idx_source


def features(clf, x):
  h = np.maximum(x @ clf.coefs_[0] + clf.intercepts_[0], 0.0)  # the hidden ReLU layer
  return h, clf.predict_proba(x)


def frechet(a, b):
  mu1, mu2 = a.mean(0), b.mean(0)
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  covmean = linalg.sqrtm(s1 @ s2).real
  return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def summary(clf, x, ref_h):
  h, p = features(clf, x)
  py = p.mean(0)
  kl = (p * (np.log(p + 1e-12) - np.log(py + 1e-12))).sum(1).mean()
  hist = np.bincount(p.argmax(1), minlength=10) / len(p)
  return {"n": len(x), "fd": round(frechet(h, ref_h), 3), "is": round(float(np.exp(kl)), 3),
          "conf": round(float(p.max(1).mean()), 4), "classes": [round(float(v), 3) for v in hist]}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--data_dir", required=True)
  ap.add_argument("--samples", required=True, help=".npy uint8 (N, 28, 28, 1) from artjax.sample")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args()

  cfg = ml_collections.ConfigDict({"name": "mnist", "dir": args.data_dir})
  train, test = idx_source(cfg, "train"), idx_source(cfg, "test")
  flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255.0  # noqa: E731
  clf = MLPClassifier((256,), max_iter=12, batch_size=256, random_state=args.seed, early_stopping=False)
  clf.fit(flat(train.images), train.labels)
  xt = flat(test.images)
  acc = float((clf.predict(xt) == test.labels).mean())
  samples = np.load(args.samples)
  if samples.shape[1:] != (28, 28, 1) or samples.dtype != np.uint8:
    raise SystemExit(f"error: samples must be uint8 (N, 28, 28, 1), got {samples.dtype} {samples.shape}")
  if len(samples) < 5000:
    raise SystemExit(f"error: need at least 5000 samples for the FD, got {len(samples)}")
  idx = np.random.default_rng(args.seed).permutation(len(xt))
  ref_h, _ = features(clf, xt[idx[5000:]])  # test half B: what every set is compared with
  out = {"classifier_test_acc": round(acc, 4),
         "samples": summary(clf, flat(samples[:5000]), ref_h),
         "test_half_vs_other_half": summary(clf, xt[idx[:5000]], ref_h)}
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
