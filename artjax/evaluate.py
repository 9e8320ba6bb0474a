"""CLI: sample-quality metrics of a trained generative run's checkpoints, appended to WORKDIR/eval/metrics.jsonl.

  python -m artjax.evaluate --workdir DIR --feature_net CLASSIFIER_WORKDIR [--num 10000]
      [--step N | --all] [--watch SECONDS] [--batch 500] [--seed 0] [--stats_dir D] [--ref_num N]
      [--label 3 --guidance 2 --sampler ddim --steps 50 --eta 0]     # sampling options of the family
      [--inception pt_inception.npz]                                 # Inception-v3 features instead
  python -m artjax.evaluate --workdir DIR --feature_net CLASSIFIER_WORKDIR --reference_only  # the "floor"
  python -m artjax.evaluate --workdir DIR [--split val] [--step N | --all]   # language models

Language models (methods with split evaluation) get the exact loss in nats/token and bits per character
over the whole --split (every token once, in order); no feature net or sampling is involved.

Per checkpoint step: FID, IS (the classifier's confidence and diversity), precision and recall
(Kynkaanniemi et al. 2019, k=3) of --num samples against the test split of the run's own dataset, in
the feature space of an artjax classifier (configs/eval/classifier_mnist.py) -- Inception weights are
optional. Likelihood models (a method with `log_likelihood`) also get NLL (nats/example) and bits/dim
on --nll_num test examples. Steps already evaluated with identical settings are skipped, so a rerun
(or --watch beside a training run) only evaluates what is new. Defaults for the feature net, --num
and sampling options can come from the run's config: config.eval = dict(feature_net=..., num_samples=...,
sample_options=dict(...)). Samples are clipped and rounded to 8 bits (as if saved as images) before
scoring, like the uint8 reference data. Figures are comparable only for the same feature net checksum.
"""

import json
import math
import pathlib
import time

from absl import flags, logging

from artjax import errors
from artjax.errors import ArtjaxError
from artjax.inference import prefer_ema
from artjax.sampling import define_option_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir of the generative run (holds checkpoints/).")
_NUM = flags.DEFINE_integer("num", None, "Samples per evaluation (default: config.eval.num_samples or 10000).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest).")
_ALL = flags.DEFINE_bool("all", False, "Evaluate every checkpoint step in the workdir.")
_WATCH = flags.DEFINE_float("watch", 0, "If > 0: poll every this many seconds for new checkpoints, evaluate "
                            "them, and exit once config.total_steps is evaluated.")
_FEATURE_NET = flags.DEFINE_string("feature_net", None, "Workdir of an artjax classifier run (the feature net; "
                                   "default: config.eval.feature_net).")
_INCEPTION = flags.DEFINE_string("inception", None, "An .npz of FID Inception-v3 weights "
                                 "(tools/convert_inception.py): use it instead of a classifier.")
_BATCH = flags.DEFINE_integer("batch", 500, "Samples generated / images featurized per compiled call.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_EMA = flags.DEFINE_bool("ema", None, "Sample with the EMA params (--noema: raw); default: config.sample_ema "
                        "(True unless the config says otherwise).")
_STATS_DIR = flags.DEFINE_string("stats_dir", None, "Reference statistics cache (default: FEATURE_NET/fid_stats).")
_REF_NUM = flags.DEFINE_integer("ref_num", None, "Reference examples of the reference split (default: all).")
_REF_SPLIT = flags.DEFINE_string("ref_split", "test", "Reference split. Papers' CIFAR-10 FIDs use the 50k "
                                 "train split (--ref_split train); the default, test, is held out.")
_IS_SPLITS = flags.DEFINE_integer("is_splits", 1, "Inception Score splits (papers: 10; reported: the mean).")
_K = flags.DEFINE_integer("k", 3, "Nearest neighbours defining the precision/recall manifolds.")
_NLL_NUM = flags.DEFINE_integer("nll_num", None, "Test examples for NLL / bits-per-dim (likelihood models; "
                                "default: config.eval.nll_num or 1000).")
_NLL_SAMPLES = flags.DEFINE_integer("nll_samples", None, "Importance samples per example for NLL "
                                    "(default: config.eval.nll_samples or 100).")
_NLL_BATCH = flags.DEFINE_integer("nll_batch", 50, "Test examples per compiled NLL call.")
_REFERENCE_ONLY = flags.DEFINE_bool("reference_only", False, "Print the floor instead: FID/precision/recall of "
                                    "--num train examples against the test reference, and classifier accuracy.")
_SPLIT = flags.DEFINE_string("split", "val", "Split scored by methods with exact split evaluation (language "
                             "models: loss and bits per character over all of it).")
_OPTIONS = define_option_flags()  # --label --guidance --sampler --steps --eta, as artjax.sample
flags.mark_flags_as_required(["workdir"])

DEFAULT_NUM = 10_000


def _say(msg):
  print(msg, flush=True)


def finalized_steps(workdir) -> list[int]:
  """Complete checkpoint steps (Orbax renames a step's tmp dir only when it is fully written)."""
  from artjax.checkpoint import Reader

  ckpt = Reader(workdir)
  try:
    return sorted(ckpt.all_steps())
  finally:
    ckpt.close()


def eval_section(config) -> dict:
  section = config.get("eval", None)
  return section.to_dict() if hasattr(section, "to_dict") else dict(section or {})


def sample_options(config) -> dict:
  options = dict(eval_section(config).get("sample_options", None) or {})
  return {**options, **_OPTIONS()}


def make_feature_net(config, workdir):
  from artjax.eval.features import ClassifierFeatures

  if _INCEPTION.value:
    from artjax.eval.inception import InceptionFeatures

    return InceptionFeatures.from_path(_INCEPTION.value, batch=_BATCH.value)
  path = _FEATURE_NET.value or eval_section(config).get("feature_net")
  if path:
    return ClassifierFeatures.from_workdir(path, batch=_BATCH.value)
  from artjax import methods

  if hasattr(methods.build(config), "features"):  # --reference_only on the classifier's own run
    return ClassifierFeatures.from_workdir(workdir, batch=_BATCH.value)
  raise ArtjaxError("no feature net: pass --feature_net CLASSIFIER_WORKDIR (a run of "
                    "configs/eval/classifier_mnist.py), set config.eval.feature_net, or pass --inception")


def compare(net, ref, feats, logits) -> dict:
  """FID, IS, precision and recall of (features, logits) against a reference."""
  from artjax.eval import metrics

  mu, sigma = metrics.gaussian_stats(feats)
  is_mean, _ = metrics.inception_score(logits, splits=_IS_SPLITS.value)
  precision, recall = metrics.precision_recall(ref["features"], feats, k=_K.value)
  return {"fid": metrics.frechet_distance(mu, sigma, ref["mu"], ref["sigma"]), "is": is_mean,
          "precision": precision, "recall": recall}


def nll_settings(config) -> tuple[int, int]:
  """(test examples, importance samples) for NLL: the flags, else config.eval, else 1000 and 100."""
  section = eval_section(config)
  num = _NLL_NUM.value if _NLL_NUM.value is not None else section.get("nll_num", 1000)
  samples = _NLL_SAMPLES.value if _NLL_SAMPLES.value is not None else section.get("nll_samples", 100)
  return int(num), int(samples)


def negative_log_likelihood(method, params, model_state, data_cfg, nll_num, nll_samples) -> dict:
  """Mean NLL (nats/example) and bits/dim of `nll_num` test examples, `nll_samples` importance samples each."""
  import jax
  import numpy as np

  from artjax.eval.reference import load_split

  images, labels = load_split(data_cfg, "test", nll_num)
  num_samples, bs = nll_samples, min(_NLL_BATCH.value, len(images))
  fn = jax.jit(lambda p, ms, b, r: method.log_likelihood(p, ms, b, r, num_samples))
  key = jax.random.fold_in(jax.random.key(_SEED.value), 1 << 20)  # not the sampling stream
  logp = []
  for i, s in enumerate(range(0, len(images), bs)):
    idx = np.arange(s, s + bs) % len(images)  # the last batch wraps around: one compiled shape
    batch = {"image": images[idx]}
    if labels is not None:
      batch["label"] = labels[idx]
    logp.append(np.asarray(fn(params, model_state, batch, jax.random.fold_in(key, i)))[:len(images) - s])
  nll = -float(np.mean(np.concatenate(logp)))
  dims = int(np.prod(images.shape[1:]))
  return {"nll": nll, "bpd": nll / (dims * math.log(2))}


def already_done(path: pathlib.Path, settings: dict) -> set[int]:
  done = set()
  if path.is_file():
    for line in path.read_text().splitlines():
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue  # a line cut by a kill: re-evaluate rather than fail
      if all(row.get(k) == v for k, v in settings.items()):
        done.add(row["step"])
  return done


def device_name() -> str:
  import jax

  d = jax.devices()[0]
  return f"{jax.device_count()} x {d.platform} ({d.device_kind})"


def evaluate_step(workdir, step, net, ref, settings, options, num):
  """Samples from one checkpoint and scores it; returns the metrics line."""
  from artjax.eval.features import quantize
  from artjax.inference import Sampler

  t = time.perf_counter()
  sampler = Sampler.from_workdir(workdir, step, _EMA.value, max_batch=_BATCH.value)
  config, method, params, model_state = sampler.config, sampler.method, sampler.params, sampler.model_state
  value_range = tuple(config.data.get("value_range", (-1.0, 1.0)))
  samples = sampler.sample(num, _SEED.value, **options).items
  feats, logits = net(quantize(samples, value_range), value_range)
  row = {"step": step, **settings, **compare(net, ref, feats, logits)}
  if hasattr(method, "log_likelihood"):
    row.update(negative_log_likelihood(method, params, model_state, config.data, *nll_settings(config)))
  if "classifier_accuracy" in ref["manifest"]:
    row["classifier_accuracy"] = ref["manifest"]["classifier_accuracy"]
  row.update(seconds=round(time.perf_counter() - t, 2), device=device_name(),
             time=time.strftime("%Y-%m-%dT%H:%M:%S"))
  return row


def evaluate_step_split(workdir, step, split):
  """Exact metrics of one checkpoint over a whole data split (language models)."""
  from artjax.eval.split import evaluate_split
  from artjax.inference import Sampler

  t = time.perf_counter()
  s = Sampler.from_workdir(workdir, step, _EMA.value)
  metrics = evaluate_split(s.method, s.params, s.model_state, s.config.data, split, _BATCH.value, progress=True)
  return {"step": step, "split": split, **metrics, "seconds": round(time.perf_counter() - t, 2),
          "device": device_name(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def summary(row) -> str:
  if "fid" not in row:  # split metrics: whatever the method's eval_summary reports, counts last
    meta = ("step", "split", "seconds", "device", "time")
    counts = ("tokens", "frames", "notes")
    shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in meta + counts)
    counted = ", ".join(f"{int(row[k])} {k}" for k in counts if k in row)
    return f"step {row['step']}: {row['split']} {shown}  ({counted}{', ' if counted else ''}{row['seconds']:.1f}s)"
  parts = [f"FID {row['fid']:.3f}", f"IS {row['is']:.3f}", f"precision {row['precision']:.3f}",
           f"recall {row['recall']:.3f}"]
  if "nll" in row:
    parts += [f"NLL {row['nll']:.2f} nats", f"{row['bpd']:.4f} bits/dim"]
  return f"step {row['step']}: " + "  ".join(parts) + f"  ({row['num']} samples, {row['seconds']:.1f}s)"


def reference_floor(config, net, ref, num):
  from artjax.eval.reference import load_split

  value_range = tuple(config.data.get("value_range", (-1.0, 1.0)))
  images, _ = load_split(config.data, "train", num)
  feats, logits = net(images, value_range)
  m = compare(net, ref, feats, logits)
  acc = ref["manifest"].get("classifier_accuracy")
  acc_text = f"; classifier test accuracy {acc:.4f}" if acc is not None else ""
  _say(f"floor ({len(images)} {config.data.name} train examples vs {ref['manifest']['n']} test): "
       f"FID {m['fid']:.3f}  IS {m['is']:.3f}  precision {m['precision']:.3f}  recall {m['recall']:.3f}"
       f"{acc_text}  [feature net {net.name} step {net.step}]")


def main(argv):
  if len(argv) > 1:
    raise ArtjaxError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)  # Orbax warns about read-only managers
  from artjax.checkpoint import open_for_reading

  workdir = pathlib.Path(_WORKDIR.value)
  if _STEP.value is not None and (_ALL.value or _WATCH.value):
    raise ArtjaxError("--step evaluates one checkpoint; it cannot be combined with --all or --watch")
  if _WATCH.value:  # training may not have written its first checkpoint yet
    while not (workdir.is_dir() and (workdir / "checkpoints").is_dir() and finalized_steps(workdir)):
      time.sleep(_WATCH.value)
  open_for_reading(workdir).close()  # one-line errors for a missing workdir / checkpoints dir
  steps = finalized_steps(workdir)
  if not steps:
    raise ArtjaxError(f"no checkpoints in {workdir / 'checkpoints'} (has the run saved one yet?)")
  with open_for_reading(workdir) as reader:
    config = reader.restore_config(steps[-1])
  from artjax import methods

  method = methods.build(config)
  out = workdir / "eval" / "metrics.jsonl"
  out.parent.mkdir(parents=True, exist_ok=True)
  from artjax.eval.split import supports

  if supports(method):
    settings = {"split": _SPLIT.value, "ema": prefer_ema(config, _EMA.value), "batch": _BATCH.value}
    score = lambda step: evaluate_step_split(workdir, step, _SPLIT.value)
  else:
    settings, score = image_settings(config, method, workdir)
    if settings is None:
      return
  _run_steps(workdir, steps, config, out, settings, score)


def image_settings(config, method, workdir):
  """(settings, step -> metrics row) of the sample-quality evaluation, or (None, None) after --reference_only."""
  from artjax.eval.reference import reference_stats

  num = _NUM.value or int(eval_section(config).get("num_samples", None) or DEFAULT_NUM)
  net = make_feature_net(config, workdir)
  ref = reference_stats(config.data, net, _STATS_DIR.value, _REF_NUM.value, split=_REF_SPLIT.value, log=_say)
  if _REFERENCE_ONLY.value:
    reference_floor(config, net, ref, num)
    return None, None
  options = sample_options(config)
  options = method.check_options(options)
  settings = {"num": num, "seed": _SEED.value, "batch": _BATCH.value, "ema": prefer_ema(config, _EMA.value),
              "sample_options": options, "feature_net": net.name, "feature_net_step": net.step,
              "feature_net_checksum": net.checksum, "reference": ref["key"], "k": _K.value}
  if _IS_SPLITS.value != 1:  # only when set, so earlier lines (computed with 1 split) still match
    settings["is_splits"] = _IS_SPLITS.value
  if hasattr(method, "log_likelihood"):
    settings["nll_num"], settings["nll_samples"] = nll_settings(config)
  return settings, lambda step: evaluate_step(workdir, step, net, ref, settings, options, num)


def _run_steps(workdir, steps, config, out, settings, score):
  """Scores the requested steps (--step, --all, --watch) not already in `out` with these settings."""
  announced = set()

  def run(todo):
    done = already_done(out, settings)
    for step in todo:
      if step in done:
        if step not in announced:
          _say(f"step {step}: already evaluated with these settings ({out}); skipped")
        announced.add(step)
        continue
      try:
        row = score(step)
      except ArtjaxError:
        if _WATCH.value and step not in finalized_steps(workdir):
          _say(f"step {step}: deleted by the trainer before it could be evaluated; skipped")
          continue
        raise
      with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
      done.add(step)
      announced.add(step)
      _say(summary(row))
    return done

  if _WATCH.value:
    while True:
      done = run(finalized_steps(workdir))
      if config.total_steps in done:
        return
      time.sleep(_WATCH.value)
  if _ALL.value:
    run(steps)
  else:
    step = steps[-1] if _STEP.value is None else _STEP.value
    if step not in steps:
      raise ArtjaxError(f"no checkpoint for step {step} in {workdir / 'checkpoints'}; available: "
                        f"{', '.join(map(str, steps))}")
    run([step])


if __name__ == "__main__":
  errors.run(main)
