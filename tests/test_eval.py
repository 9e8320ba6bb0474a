"""Evaluation: metric formulas, the classifier feature net, the reference cache and the artjax.evaluate CLI."""

import json

import numpy as np
import pytest

from artjax.errors import ArtjaxError
from artjax.eval import features, metrics, reference
from artjax.train.loop import train
from conftest import run_cli, smoke_config

CLASSIFIER = "configs/eval/classifier_mnist.py:smoke"


# --- metrics -------------------------------------------------------------------------------------

def test_frechet_distance_identical_and_diagonal_closed_form():
  rng = np.random.default_rng(0)
  mu, sigma = metrics.gaussian_stats(rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)))
  assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-6
  # Diagonal covariances: FD = |mu1 - mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
  mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
  s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
  np.testing.assert_allclose(metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)), expected, rtol=1e-9)
  # Singular covariances (dead features) still give a finite, non-negative distance.
  s3 = np.diag([1.0, 0.0, 0.0])
  np.testing.assert_allclose(metrics.frechet_distance(mu1, s3, mu1, s3), 0.0, atol=1e-5)
  with pytest.raises(ArtjaxError, match="mismatched"):
    metrics.frechet_distance(mu1, np.diag(s1), mu2[:2], np.diag(s2[:2]))


def test_gaussian_stats_match_numpy():
  x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
  mu, sigma = metrics.gaussian_stats(x)
  assert mu.dtype == sigma.dtype == np.float64
  np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64).T), rtol=1e-12)


def test_inception_score_extremes():
  c = 7
  one_hot_logits = 100.0 * np.eye(c)[np.arange(70) % c]  # confident and uniform over classes
  np.testing.assert_allclose(metrics.inception_score(one_hot_logits)[0], c, rtol=1e-6)
  np.testing.assert_allclose(metrics.inception_score(one_hot_logits, splits=5)[0], c, rtol=1e-6)
  same = np.tile(np.random.default_rng(0).normal(size=(1, c)), (40, 1))  # identical predictions
  np.testing.assert_allclose(metrics.inception_score(same)[0], 1.0, rtol=1e-9)
  # Two classes, half the samples each but only 50% confident: IS = exp(log 2 - H(p)) with p = (.75, .25).
  p = np.array([[0.75, 0.25], [0.25, 0.75]] * 10)
  h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
  np.testing.assert_allclose(metrics.inception_score(np.log(p))[0], np.exp(np.log(2) - h), rtol=1e-9)


def test_precision_recall():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(300, 8))
  assert metrics.precision_recall(real, real) == (1.0, 1.0)
  assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)
  # Mode collapse: fakes all near one real point are precise, but cover almost none of the reals.
  collapsed = real[:1] + 1e-3 * rng.normal(size=(300, 8))
  p, r = metrics.precision_recall(real, collapsed)
  assert p == 1.0 and r < 0.05
  # Chunking does not change the answer.
  fake = rng.normal(size=(250, 8)) * 1.3 + 0.3
  assert metrics.precision_recall(real, fake, chunk=17) == metrics.precision_recall(real, fake, chunk=1000)


def test_knn_radii_excludes_self():
  x = np.array([[0.0], [1.0], [3.0], [7.0]])
  np.testing.assert_allclose(metrics.knn_radii(x, 1), [1.0, 1.0, 4.0, 16.0])  # squared distances
  np.testing.assert_allclose(metrics.knn_radii(x, 2), [9.0, 4.0, 9.0, 36.0])


def test_adapt_and_quantize():
  x = np.linspace(-1, 1, 2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.float32)
  y = np.asarray(features.adapt_images(x, (-1.0, 1.0), 4, 1, (0.0, 1.0)))
  np.testing.assert_allclose(y, (x + 1) / 2, atol=1e-6)
  rgb = np.asarray(features.adapt_images(x, (-1.0, 1.0), 8, 3, (-1.0, 1.0)))
  assert rgb.shape == (2, 8, 8, 3) and np.allclose(rgb[..., 0], rgb[..., 2])
  grey = np.asarray(features.adapt_images(np.ones((1, 4, 4, 3), np.float32) * [1.0, 0.0, 0.0], (0.0, 1.0), 4, 1,
                                          (0.0, 1.0)))
  np.testing.assert_allclose(grey, 0.299, atol=1e-6)
  q = features.quantize(np.array([-3.0, 0.0, 0.3, 2.0]), (-1.0, 1.0))
  np.testing.assert_allclose(q, [-1.0, 1 / 255, np.round(1.3 * 127.5) / 127.5 - 1, 1.0], atol=1e-6)


# --- the classifier feature net ------------------------------------------------------------------

def classifier_config(**overrides):
  base = {"data.name": "digits", "data.image_size": 8, "total_steps": 150, "batch_size": 32,
          "checkpoint_every": 50, "keep_checkpoints": 2, "log_every": 25, "optimizer.lr": 3e-3}
  return smoke_config(CLASSIFIER, **{**base, **overrides})


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("classifier")
  train(classifier_config(), d, progress=False)  # checkpoints at 100 and 150
  return d


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("gan")
  train(smoke_config(), d, progress=False)  # digits DCGAN, 16 px in [-1, 1]; checkpoints at 2 and 4
  return d


def test_classifier_learns_digits(classifier_dir):
  rows = [json.loads(l) for l in open(classifier_dir / "metrics.jsonl")]
  losses = [r["loss"] for r in rows if "loss" in r]
  assert losses[-1] < losses[0] - 0.5, losses
  net = features.ClassifierFeatures.from_workdir(classifier_dir)
  assert net.step == 150 and net.image_size == 8 and net.value_range == (0.0, 1.0)
  assert net.accuracy("test") > 0.4  # chance is 0.1
  f, logits = net(np.zeros((3, 16, 16, 1), np.float32), (-1.0, 1.0))  # resized 16 -> 8 on the way
  assert f.shape == (3, 32) and logits.shape == (3, 10) and (f >= 0).all()


def test_checkpoint_checksum(classifier_dir, tmp_path):
  import shutil

  a = features.checkpoint_checksum(classifier_dir / "checkpoints" / "150")
  assert a == features.checkpoint_checksum(classifier_dir / "checkpoints" / "150")
  assert a != features.checkpoint_checksum(classifier_dir / "checkpoints" / "100")
  copy = tmp_path / "150"
  shutil.copytree(classifier_dir / "checkpoints" / "150", copy)
  assert features.checkpoint_checksum(copy) == a  # depends on contents, not location
  victim = max((p for p in copy.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = victim.read_bytes()
  victim.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # flip, so the byte surely changes
  assert features.checkpoint_checksum(copy) != a


def test_non_classifier_feature_net_is_refused(gan_dir):
  with pytest.raises(ArtjaxError, match="not a classifier run"):
    features.ClassifierFeatures.from_workdir(gan_dir)


def test_reference_cache_hits_and_misses(classifier_dir, tmp_path, monkeypatch):
  data_cfg = smoke_config().data  # the GAN's preprocessing: 16 px in [-1, 1]
  net = features.ClassifierFeatures.from_workdir(classifier_dir)
  first = reference.reference_stats(data_cfg, net, tmp_path, log=lambda m: None)
  assert not first["cached"] and first["manifest"]["n"] == 297 and first["features"].shape == (297, 32)
  assert 0.4 < first["manifest"]["classifier_accuracy"] <= 1.0
  assert (tmp_path / f"{first['key']}.npz").is_file() and (tmp_path / f"{first['key']}.json").is_file()

  with monkeypatch.context() as m:
    m.setattr(reference, "load_split", lambda *a, **k: pytest.fail("a cache hit must not load data"))
    second = reference.reference_stats(data_cfg, net, tmp_path, log=lambda m: None)
  assert second["cached"] and second["key"] == first["key"]
  np.testing.assert_array_equal(second["sigma"], first["sigma"])

  other_range = smoke_config(**{"data.value_range": (0.0, 1.0)}).data
  third = reference.reference_stats(other_range, net, tmp_path, log=lambda m: None)
  assert not third["cached"] and third["key"] != first["key"]
  assert reference.reference_stats(smoke_config(**{"data.image_size": 8}).data, net, tmp_path, num=100,
                                   log=lambda m: None)["manifest"]["n"] == 100

  earlier = features.ClassifierFeatures.from_workdir(classifier_dir, step=100)
  fourth = reference.reference_stats(data_cfg, earlier, tmp_path, log=lambda m: None)
  assert not fourth["cached"] and fourth["key"] != first["key"]
  net.checksum = "0" * 64  # same step, different checkpoint contents
  fifth = reference.reference_stats(data_cfg, net, tmp_path, log=lambda m: None)
  assert not fifth["cached"] and fifth["key"] != first["key"]
  assert len(list(tmp_path.glob("*.npz"))) == 5


# --- the CLI -------------------------------------------------------------------------------------

def evaluate(*args):
  return run_cli("-m", "artjax.evaluate", *map(str, args), timeout=600)


def one_line_error(p, expect):
  assert p.returncode == 2, p.stdout + p.stderr
  assert expect in p.stderr, p.stderr
  assert "Traceback" not in p.stderr
  assert len([l for l in p.stderr.splitlines() if l.startswith("error:")]) == 1


def test_cli_end_to_end_watch_and_resume(gan_dir, classifier_dir, tmp_path):
  common = ("--workdir", gan_dir, "--feature_net", classifier_dir, "--num", 64, "--batch", 32,
            "--stats_dir", tmp_path / "stats")
  # --watch on a finished run: evaluates every finalized step, then exits at config.total_steps (4).
  p = evaluate(*common, "--watch", 0.1)
  assert p.returncode == 0, p.stderr
  rows = [json.loads(l) for l in open(gan_dir / "eval" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [2, 4]
  for r in rows:
    assert all(np.isfinite(r[k]) for k in ("fid", "is", "precision", "recall", "seconds")), r
    assert r["fid"] > 0 and 1.0 <= r["is"] <= 10.0 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    assert r["num"] == 64 and r["seed"] == 0 and r["feature_net_step"] == 150
    assert len(r["feature_net_checksum"]) == 64 and 0.4 < r["classifier_accuracy"] <= 1
  assert "step 4: FID" in p.stdout

  again = evaluate(*common)  # the latest step, already evaluated with identical settings
  assert again.returncode == 0, again.stderr
  assert "already evaluated" in again.stdout and "FID" not in again.stdout
  assert len(open(gan_dir / "eval" / "metrics.jsonl").readlines()) == 2

  floor = evaluate(*common, "--reference_only", "--num", 200)
  assert floor.returncode == 0, floor.stderr
  assert "floor (200 digits train examples vs 297 test)" in floor.stdout and "classifier test accuracy" in floor.stdout
  fid = float(floor.stdout.split("FID ")[1].split()[0])
  assert fid < rows[-1]["fid"]  # real train digits are closer to the test digits than a 4-step GAN


def test_cli_errors(gan_dir, classifier_dir, tmp_path):
  one_line_error(evaluate("--workdir", gan_dir, "--feature_net", tmp_path / "nope"), "does not exist")
  one_line_error(evaluate("--workdir", gan_dir), "no feature net")
  one_line_error(evaluate("--workdir", gan_dir, "--feature_net", gan_dir), "not a classifier run")
  (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
  one_line_error(evaluate("--workdir", tmp_path / "empty", "--feature_net", classifier_dir), "no checkpoints")
  one_line_error(evaluate("--workdir", gan_dir, "--feature_net", classifier_dir, "--step", 3), "no checkpoint for step 3")


# --- Inception (weights are user-supplied: only shapes and the name mapping are testable) ----------

def test_inception_npz_round_trip_and_shapes(tmp_path):
  import jax

  from artjax.eval import inception

  abstract = inception.abstract_variables()
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: (0.05 * rng.normal(size=s.shape)).astype(np.float32), abstract)
  variables["batch_stats"] = jax.tree.map(lambda v: np.abs(v) + 0.5, variables["batch_stats"])
  arrays = inception.to_torch_arrays(variables)
  assert arrays["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)  # PyTorch OIHW
  assert arrays["fc.weight"].shape == (1008, 2048) and "Mixed_7c.branch_pool.bn.running_var" in arrays
  np.savez(tmp_path / "w.npz", **arrays, **{"Conv2d_1a_3x3.bn.num_batches_tracked": np.array(0)})
  loaded = inception.load_npz(tmp_path / "w.npz")
  assert jax.tree.structure(loaded) == jax.tree.structure(variables)
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)

  del arrays["Mixed_6b.branch7x7_2.conv.weight"]
  np.savez(tmp_path / "missing.npz", **arrays)
  with pytest.raises(ArtjaxError, match="lacks 1 FIDInceptionV3 weight"):
    inception.load_npz(tmp_path / "missing.npz")

  net = inception.InceptionFeatures.from_path(tmp_path / "w.npz", batch=2)
  f, logits = net(rng.random((2, 16, 16, 1)).astype(np.float32), (0.0, 1.0))  # grey 16 px -> RGB 299 px
  assert f.shape == (2, 2048) and logits.shape == (2, 1008) and np.isfinite(f).all() and (f >= 0).all()
