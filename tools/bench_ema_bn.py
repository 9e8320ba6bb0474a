r"""FID / IS of a BatchNorm GAN's checkpoints sampled with raw or EMA weights, and with the raw run's
BatchNorm running statistics or statistics re-estimated for the sampled weights (`GAN.sampling_state`).

  python tools/bench_ema_bn.py --workdir runs/mnist_dcgan_ema --feature_net runs/classifier_mnist \
      --steps 1000,2000 --num 2000 [--recal 16x128,64x128] [--variants raw,ema,ema_recal,raw_recal]

Variants: raw = raw weights + the running statistics training collected (with the raw weights);
ema = EMA weights + those same statistics (artjax's behaviour before sampling_state); ema_recal /
raw_recal = EMA / raw weights + statistics re-estimated for them, one row per --recal setting
KxB (K batches of B z); ema_batch / raw_batch (diagnostic) = train-mode BatchNorm, each call's
--batch samples normalized with their own statistics (no running statistics at all). Every variant draws the same z (--seed), so differences between rows are not
sampling noise of the z; the re-estimation key is fold_in(key(--recal_seed), step). FID / IS in the
feature space of an artjax classifier (configs/eval/classifier_mnist.py) against the dataset's test split,
computed as `artjax.evaluate` does (samples clipped and quantized to 8 bits). Results: experiments/README.md.
"""

import argparse
import time


def parse_recal(text):
  out = []
  for item in filter(None, text.split(",")):
    k, _, b = item.partition("x")
    out.append((int(k), int(b) if b else 0))  # B 0: the method's default (the generator's train batch)
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="A trained GAN run with EMA weights (checkpoints/).")
  ap.add_argument("--feature_net", required=True, help="Workdir of an artjax classifier run.")
  ap.add_argument("--steps", default="", help="Comma-separated checkpoint steps (default: all).")
  ap.add_argument("--num", type=int, default=2000, help="Samples per variant.")
  ap.add_argument("--batch", type=int, default=500, help="Samples per compiled call.")
  ap.add_argument("--seed", type=int, default=0, help="Sampling seed (the same z for every variant).")
  ap.add_argument("--recal", default="16x0", help="Re-estimation settings KxB, comma-separated (B 0 or "
                  "omitted: the default batch, the generator's training batch).")
  ap.add_argument("--recal_seed", type=int, default=1, help="Seed of the re-estimation batches.")
  ap.add_argument("--variants", default="raw,ema,ema_recal,raw_recal")
  ap.add_argument("--pr", action="store_true", help="Also precision / recall (k=3).")
  ap.add_argument("--show_stats", action="store_true", help="Print how far each re-estimated BatchNorm "
                  "statistic is from the raw run's running statistic (relative L2).")
  args = ap.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np
  from absl import logging

  logging.set_verbosity(logging.ERROR)
  from artjax import methods
  from artjax.eval import metrics
  from artjax.eval.features import ClassifierFeatures, quantize
  from artjax.eval.reference import reference_stats
  from artjax.methods.gan import G
  from artjax.train.checkpoint import open_for_reading

  variants = args.variants.split(",")
  recal = parse_recal(args.recal)
  ckpt = open_for_reading(args.workdir)
  try:
    steps = [int(s) for s in args.steps.split(",") if s] or sorted(ckpt.all_steps())
    restored = {s: ckpt.restore_model(s) for s in steps}
  finally:
    ckpt.close()

  net = ClassifierFeatures.from_workdir(args.feature_net, batch=args.batch)
  config0 = restored[steps[0]][0]
  ref = reference_stats(config0.data, net, log=print)
  value_range = tuple(config0.data.get("value_range", (-1.0, 1.0)))
  print(f"feature net {net.name} step {net.step} (checksum {net.checksum[:12]}); reference {ref['key']} "
        f"(n={ref['manifest']['n']}); {args.num} samples per variant, seed {args.seed}; "
        f"device {jax.devices()[0].platform}", flush=True)

  def method_for(config, k, b):
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.method.bn_recalibration_batches = k
      config.method.bn_recalibration_batch_size = b
    return methods.build(config)

  rows = []
  for step in steps:
    config, items = restored[step]
    if items.get("ema_params") is None:
      raise SystemExit(f"step {step}: the run keeps no EMA weights (config.ema_decay=0)")
    method = methods.build(config)
    batch = min(args.batch, args.num)
    sample = jax.jit(lambda p, ms, rng: method.sample(p, ms, rng, batch))

    @jax.jit
    def sample_batch_stats(p, ms, rng):  # the same z as `sample` (GAN.sample: prior on the first split)
      z = method.prior(jax.random.split(rng)[0], batch)
      c = method.cond(jnp.arange(batch) % method.num_classes) if method.num_classes else {}
      out, _ = method.gen.apply({"params": p[G], **ms[G]}, z, train=True, mutable=list(ms[G]), **c)
      return out
    weights = {"raw": items["params"], "ema": items["ema_params"]}
    todo = []  # (label, params, model_state, seconds spent on the state)
    for v in variants:
      w, _, rec = v.partition("_")
      if not rec:
        todo.append((f"{w} + raw running stats", weights[w], items["model_state"], 0.0))
        continue
      if rec == "batch":
        todo.append((f"{w} + each batch's own stats (B={batch})", weights[w], None, 0.0))
        continue
      for k, b in recal:
        m = method_for(config, k, b)
        fn = jax.jit(m.sampling_state)
        key = jax.random.fold_in(jax.random.key(args.recal_seed), step)
        t = time.perf_counter()
        state = jax.block_until_ready(fn(weights[w], items["model_state"], key))
        secs = time.perf_counter() - t  # includes compilation
        size = b or m.generator_batch_size()
        if args.show_stats:
          old, new = items["model_state"][G]["batch_stats"], state[G]["batch_stats"]
          rel = {f"{layer}/{s}": float(np.linalg.norm(new[layer][s] - old[layer][s]) / np.linalg.norm(old[layer][s]))
                 for layer in old for s in ("mean", "var")}
          print(f"step {step} {w} K={k} B={size}: |re-estimated - running| / |running|: "
                + ", ".join(f"{n} {r:.3f}" for n, r in rel.items()), flush=True)
        todo.append((f"{w} + re-estimated K={k} B={size}", weights[w], state, secs))
    for label, params, state, state_secs in todo:
      t = time.perf_counter()
      key = jax.random.key(args.seed)
      fn = sample if state is not None else lambda p, _, r: sample_batch_stats(p, items["model_state"], r)
      chunks = [np.asarray(fn(params, state, jax.random.fold_in(key, i))) for i in range(-(-args.num // batch))]
      samples = np.concatenate(chunks)[:args.num]
      feats, logits = net(quantize(samples, value_range), value_range)
      mu, sigma = metrics.gaussian_stats(feats)
      row = {"step": step, "variant": label, "fid": metrics.frechet_distance(mu, sigma, ref["mu"], ref["sigma"]),
             "is": metrics.inception_score(logits)[0], "state_s": state_secs,
             "eval_s": time.perf_counter() - t}
      if args.pr:
        row["precision"], row["recall"] = metrics.precision_recall(ref["features"], feats, k=3)
      rows.append(row)
      pr = f"  P {row['precision']:.3f}  R {row['recall']:.3f}" if args.pr else ""
      print(f"step {step}  {label:<36}  FID {row['fid']:8.3f}  IS {row['is']:.3f}{pr}  "
            f"(state {state_secs:.1f}s, sample+score {row['eval_s']:.1f}s)", flush=True)

  print()
  head = "| step | weights + BatchNorm statistics | FID ↓ | IS ↑ |" + (" precision | recall |" if args.pr else "")
  print(head)
  print("|" + " --- |" * 2 + " ---: |" * (4 if args.pr else 2))
  for r in rows:
    extra = f" {r['precision']:.3f} | {r['recall']:.3f} |" if args.pr else ""
    print(f"| {r['step']} | {r['variant']} | {r['fid']:.2f} | {r['is']:.3f} |{extra}")


if __name__ == "__main__":
  main()
