"""Sample-quality metrics on feature vectors: Frechet distance, Inception Score, k-NN precision/recall."""

import warnings

import numpy as np
import scipy.linalg
import scipy.special

from artjax.errors import ArtjaxError


def gaussian_stats(features):
  """(mean (D,), covariance (D, D)) of features (N, D), in float64 (unbiased covariance, as pytorch-fid)."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ArtjaxError(f"Gaussian statistics need features of shape (N >= 2, D), got {x.shape}")
  return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the FID formula (Heusel et al. 2017), as pytorch-fid."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise ArtjaxError(f"Frechet distance of mismatched statistics: means {mu1.shape} vs {mu2.shape}, "
                      f"covariances {sigma1.shape} vs {sigma2.shape}")
  diff = mu1 - mu2
  with warnings.catch_warnings():  # singular products are expected (dead ReLU features) and handled below
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
      # Singular product (e.g. fewer samples than dimensions): regularize, as pytorch-fid.
      offset = np.eye(len(mu1)) * eps
      covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
  if np.iscomplexobj(covmean):
    # Round-off makes sqrtm complex for near-singular matrices; only a tiny imaginary part is benign.
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ArtjaxError(f"Frechet distance: sqrtm has a large imaginary component "
                        f"({np.max(np.abs(covmean.imag)):.3g}); too few samples for the feature dimension?")
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _softmax(logits):
  z = np.asarray(logits, np.float64)
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def inception_score(logits, splits: int = 1):
  """exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016) -> (mean, std over `splits` equal chunks)."""
  p = _softmax(logits)
  if p.ndim != 2 or len(p) < splits or splits < 1:
    raise ArtjaxError(f"inception score needs logits (N >= splits, classes) and splits >= 1, got {p.shape}, {splits}")
  scores = []
  for part in np.array_split(p, splits):
    py = part.mean(0, keepdims=True)
    # xlogy: 0 * log 0 = 0, so one-hot predictions are exact.
    kl = (scipy.special.xlogy(part, part) - scipy.special.xlogy(part, py)).sum(1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _sq_norms(x):
  return np.einsum("ij,ij->i", x, x)


def _pairwise_sq_dist(a, b, b_sq):
  return np.maximum(_sq_norms(a)[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def knn_radii(features, k: int, chunk: int = 1000):
  """Squared distance from each row to its k-th nearest other row (the row itself, at 0, is not counted)."""
  x = np.asarray(features, np.float64)
  if not 1 <= k < len(x):
    raise ArtjaxError(f"k-NN radii need 1 <= k < number of points, got k={k}, n={len(x)}")
  x_sq = _sq_norms(x)
  out = np.empty(len(x))
  for s in range(0, len(x), chunk):
    d = _pairwise_sq_dist(x[s:s + chunk], x, x_sq)
    out[s:s + chunk] = np.partition(d, k, axis=1)[:, k]  # index 0 is the self-distance
  return out


def manifold_coverage(manifold, radii, queries, chunk: int = 1000):
  """Fraction of `queries` inside the union of balls (manifold_i, radius_i): the k-NN manifold estimate."""
  m = np.asarray(manifold, np.float64)
  q = np.asarray(queries, np.float64)
  m_sq = _sq_norms(m)
  inside = np.empty(len(q), bool)
  for s in range(0, len(q), chunk):
    inside[s:s + chunk] = (_pairwise_sq_dist(q[s:s + chunk], m, m_sq) <= radii[None, :]).any(1)
  return float(inside.mean())


def precision_recall(real_features, fake_features, k: int = 3, chunk: int = 1000):
  """Improved precision and recall (Kynkaanniemi et al. 2019) -> (precision, recall).

  Precision: the fraction of fakes inside the real manifold (balls to each real's k-th nearest real);
  recall: the fraction of reals inside the fake manifold. Distances are computed `chunk` rows at a
  time, so 10k x 10k points need ~chunk * 10k * 8 bytes at once.
  """
  real = np.asarray(real_features, np.float64)
  fake = np.asarray(fake_features, np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ArtjaxError(f"precision/recall need features (N, D) of one D, got {real.shape} and {fake.shape}")
  precision = manifold_coverage(real, knn_radii(real, k, chunk), fake, chunk)
  recall = manifold_coverage(fake, knn_radii(fake, k, chunk), real, chunk)
  return precision, recall
