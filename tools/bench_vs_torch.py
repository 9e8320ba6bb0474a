r"""artjax against PyTorch on this machine, in one run: the same workload timed in alternating rounds.

  python tools/bench_vs_torch.py --torch_python /work/torchvenv/bin/python \
      [--models dcgan,gpt,conv_fwd,conv_wgrad] [--rounds 5] [--mnist_dir ../shared/data/mnist] \
      [--text_path ../shared/data/tiny_shakespeare/input.txt] [--xla_flags '--xla_...'] \
      [--set key=value ...] [--conv_impl xla|im2col|wgrad] [--torch_threads N] [--quiet_cores 0.3] [--json f]

Workloads (artjax side in this process, PyTorch side in a subprocess of --torch_python, which must have
torch; artjax never imports torch):
  dcgan       one full train step of configs/gan/mnist_dcgan.py at batch 128 (artjax's jitted Trainer step on
              real MNIST batches, incl. the config's weight EMA) vs tools/torch_twins/dcgan.py (same layers,
              losses, Adam and EMA, random 'real' batch);
  gpt         one full train step of configs/text/shakespeare_char.py (4x128 GPT, batch 12 x 64 tokens, AdamW,
              clipping) vs tools/torch_twins/gpt.py;
  conv_fwd    a 3x3 'SAME' conv 128 -> 64 channels on a (128, 14, 14) batch, forward only;
  conv_wgrad  the same conv's forward plus its weight gradient (cotangent = the output).
artjax's layout is NHWC, PyTorch's NCHW (each one's native layout).

Each round runs `steps` steps of one side, then the other (A, B, A, B, ...), after a warm-up (compilation
and 3 steps) of both; while one side runs the other waits, idle, on a pipe. Printed per workload: median and
min milliseconds per step of each side, the ratio artjax / PyTorch of the medians (> 1: artjax slower), and
cores busy = process CPU time / wall time during the timed rounds (and the median process CPU ms per step,
the figure least disturbed by other processes); for the convs also GFLOP/s (2 * MACs).
Other processes on the machine distort the figures, multithreaded PyTorch (OpenMP) more than XLA:CPU, so
each workload also prints `others`: the cores other processes kept busy during its timed rounds (from
/proc/stat, less this run's own CPU time), and the 1-minute load average before and after. With
--quiet_cores X it first waits (up to --quiet_wait seconds) until others use less than X cores.
--set key=value (repeatable) overrides the artjax configs (e.g. eval settings, model fields); --conv_impl
runs the conv_* workloads through artjax.models.cpu_conv instead of lax.conv_general_dilated; --xla_flags is
appended to XLA_FLAGS before jax initialises (figures for the flags tried: experiments/perf/README.md).
"""

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tools", "torch_twins", "worker.py")
CONV = dict(batch=128, size=14, cin=128, cout=64)
CONV_FLOPS = 2 * CONV["batch"] * CONV["size"] ** 2 * CONV["cin"] * CONV["cout"] * 9


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--torch_python", required=True, help="a python interpreter that can import torch")
  p.add_argument("--models", default="dcgan,gpt,conv_fwd,conv_wgrad")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", default="dcgan=5,gpt=20,conv_fwd=10,conv_wgrad=10", help="steps per round")
  shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
  p.add_argument("--mnist_dir", default=str(shared / "mnist"))
  p.add_argument("--text_path", default=str(shared / "tiny_shakespeare" / "input.txt"))
  p.add_argument("--xla_flags", default="", help="appended to XLA_FLAGS (before jax initialises)")
  p.add_argument("--set", action="append", default=[], help="artjax config override key=value (repeatable)")
  p.add_argument("--conv_impl", default="xla", help="conv_* workloads on the artjax side: xla | im2col")
  p.add_argument("--torch_threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
  p.add_argument("--quiet_cores", type=float, default=0.0, help="wait until others use < this many cores")
  p.add_argument("--quiet_wait", type=float, default=300.0, help="at most this many seconds per workload")
  p.add_argument("--json", default="", help="also write the results here")
  return p.parse_args()


def check_torch(python):
  try:
    out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True,
                         timeout=300)
  except (OSError, subprocess.TimeoutExpired) as e:
    sys.exit(f"bench_vs_torch: cannot run --torch_python {python!r}: {e}")
  if out.returncode:
    sys.exit(f"bench_vs_torch: {python!r} cannot import torch (install it there, e.g. "
             f"`python3 -m venv /work/torchvenv && /work/torchvenv/bin/pip install torch numpy`):\n"
             f"{out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.stdout}")
  return out.stdout.strip()


class TorchSide:
  """The PyTorch worker subprocess: run(n) -> (wall, cpu) seconds of n steps."""

  def __init__(self, python, model, kwargs):
    args = [python, WORKER, model] + [f"{k}={v}" for k, v in kwargs.items()]
    self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    line = self.proc.stdout.readline()
    if not line:
      sys.exit(f"bench_vs_torch: the torch worker for {model} died before warming up ({' '.join(args)})")
    self.info = json.loads(line)

  def run(self, n):
    self.proc.stdin.write(f"{n}\n")
    r = json.loads(self.proc.stdout.readline())
    return r["wall"], r["cpu"]

  def close(self):
    self.proc.stdin.write("quit\n")
    self.proc.stdin.close()
    self.proc.wait(timeout=60)


def load_config(path, overrides, **fixed):
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(ROOT, path))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config()
  for key, value in fixed.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  for item in overrides:
    key, value = item.split("=", 1)
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    try:
      value = json.loads(value)
    except json.JSONDecodeError:
      pass  # a bare string
    node[leaf] = value
  return config


class ArtjaxTrainSide:
  """artjax's compiled Trainer step on 4 real batches: run(n) -> (wall, cpu)."""

  def __init__(self, config):
    import jax
    from artjax import errors
    from artjax.train.loop import Trainer
    self.jax = jax
    config = errors.checked_config(config)
    self.trainer = Trainer(config, tempfile.mkdtemp())
    self.state = self.trainer.init_state()
    self.step, self.compile_sec = self.trainer.compile(self.state)
    self.batches = [self.trainer.global_batch(i) for i in range(4)]
    self.i = 0
    self.run(3)
    self.info = {"compile_sec": round(self.compile_sec, 2), "config_batch": config.batch_size}

  def run(self, n):
    jax = self.jax
    c, t = time.process_time(), time.perf_counter()
    for _ in range(n):
      self.state, metrics = self.step(self.state, self.batches[self.i % 4])
      self.i += 1
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - t, time.process_time() - c


class ArtjaxConvSide:
  """A 3x3 conv (NHWC, HWIO) through artjax's conv path: forward, or forward + weight gradient."""

  def __init__(self, kind, impl):
    import jax
    import jax.numpy as jnp
    self.jax = jax
    b, s, ci, co = CONV["batch"], CONV["size"], CONV["cin"], CONV["cout"]
    self.x = jax.random.normal(jax.random.key(0), (b, s, s, ci), jnp.float32)
    self.k = jax.random.normal(jax.random.key(1), (3, 3, ci, co), jnp.float32) * 0.05
    if impl == "xla":
      conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",  # noqa: E731
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      from artjax.models.cpu_conv import conv2d
      conv = lambda x, k: conv2d(x, k, (1, 1), "SAME", impl=impl)  # noqa: E731
    if kind == "conv_fwd":
      self.f = jax.jit(conv)
    else:
      def wgrad(x, k):
        y, vjp = jax.vjp(lambda k: conv(x, k), k)
        return vjp(y)[0]
      self.f = jax.jit(wgrad)
    self.run(3)
    self.info = {"impl": impl}

  def run(self, n):
    c, t = time.process_time(), time.perf_counter()
    for _ in range(n):
      r = self.f(self.x, self.k)
    self.jax.block_until_ready(r)
    return time.perf_counter() - t, time.process_time() - c


def summarise(rounds, steps):
  per_step = [w / steps * 1e3 for w, _ in rounds]
  wall, cpu = sum(w for w, _ in rounds), sum(c for _, c in rounds)
  cpu_per_step = [c / steps * 1e3 for _, c in rounds]
  return {"median_ms": round(statistics.median(per_step), 2), "min_ms": round(min(per_step), 2),
          "rounds_ms": [round(x, 1) for x in per_step], "cores_busy": round(cpu / wall, 2),
          "cpu_ms_per_step_median": round(statistics.median(cpu_per_step), 2)}


def main():
  args = parse_args()
  torch_version = check_torch(args.torch_python)
  if args.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
  sys.path.insert(0, ROOT)
  import jax
  steps = {k: int(v) for k, v in (s.split("=") for s in args.steps.split(","))}
  results = {"machine": machine_facts(), "jax": jax.__version__, "torch": torch_version,
             "xla_flags": os.environ.get("XLA_FLAGS", ""), "overrides": args.set,
             "workloads": {}}
  print(json.dumps({k: results[k] for k in ("machine", "jax", "torch", "xla_flags", "overrides")}),
        flush=True)
  tkw = {"threads": args.torch_threads} if args.torch_threads else {}
  for model in args.models.split(","):
    n = steps.get(model, 10)
    if model == "dcgan":
      config = load_config("configs/gan/mnist_dcgan.py", args.set, **{"data.dir": args.mnist_dir})
      a = ArtjaxTrainSide(config)
      b = TorchSide(args.torch_python, "dcgan", dict(batch=config.batch_size, latent=config.method.latent_dim,
                                                      ema_decay=float(config.ema_decay), **tkw))
    elif model == "gpt":
      config = load_config("configs/text/shakespeare_char.py", args.set, **{"data.path": args.text_path})
      a = ArtjaxTrainSide(config)
      vocab = a.trainer.method.tokenizer.vocab_size
      m = config.model
      b = TorchSide(args.torch_python, "gpt", dict(vocab=vocab, batch=config.batch_size, seq=config.data.seq_len,
                                                    layers=m.num_layers, heads=m.num_heads, c=m.emb_dim, **tkw))
    elif model in ("conv_fwd", "conv_wgrad"):
      a = ArtjaxConvSide(model, args.conv_impl)
      b = TorchSide(args.torch_python, model, dict(CONV, **tkw))
    else:
      sys.exit(f"bench_vs_torch: unknown model {model!r}")
    waited = wait_quiet(args.quiet_cores, args.quiet_wait) if args.quiet_cores else 0.0
    load0 = os.getloadavg()[0]
    busy0, t0 = machine_busy_sec(), time.perf_counter()
    ra, rb = [], []
    for _ in range(args.rounds):
      ra.append(a.run(n))
      rb.append(b.run(n))
    load1 = os.getloadavg()[0]
    own = sum(c for _, c in ra) + sum(c for _, c in rb)
    others = max(0.0, machine_busy_sec() - busy0 - own) / (time.perf_counter() - t0)
    b.close()
    sa, sb = summarise(ra, n), summarise(rb, n)
    if model.startswith("conv"):
      flops = CONV_FLOPS * (2 if model == "conv_wgrad" else 1)
      for s in (sa, sb):
        s["gflops_per_sec"] = round(flops / (s["median_ms"] / 1e3) / 1e9, 1)
    r = {"steps_per_round": n, "rounds": args.rounds, "artjax": dict(sa, **a.info), "torch": dict(sb, **b.info),
         "ratio_artjax_over_torch": round(sa["median_ms"] / sb["median_ms"], 2),
         "loadavg_1min_before_after": [round(load0, 2), round(load1, 2)],
         "others_cores_busy": round(others, 2), "waited_for_quiet_sec": round(waited, 1)}
    results["workloads"][model] = r
    print(f"{model:10s} artjax median {sa['median_ms']:8.1f} ms (min {sa['min_ms']:8.1f}, cores {sa['cores_busy']:.2f})"
          f" | torch median {sb['median_ms']:8.1f} ms (min {sb['min_ms']:8.1f}, cores {sb['cores_busy']:.2f})"
          f" | artjax/torch {r['ratio_artjax_over_torch']:.2f} | others {others:.2f} cores, load {load0:.2f}->{load1:.2f}",
          flush=True)
    print("  " + json.dumps(r), flush=True)
    del a
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)


def machine_busy_sec():
  """CPU seconds all processes have used (user+nice+system+irq+softirq+steal), from /proc/stat."""
  try:
    with open("/proc/stat") as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except OSError:
    return 0.0
  return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(cores, timeout, window=2.0):
  """Sleeps until, over a `window`-second sample, the machine is busier than idle by < `cores`."""
  start = time.perf_counter()
  while time.perf_counter() - start < timeout:
    b0 = machine_busy_sec()
    time.sleep(window)
    if (machine_busy_sec() - b0) / window < cores:
      break
  return time.perf_counter() - start


def machine_facts():
  facts = {"cpus": os.cpu_count()}
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
    facts["model"] = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    facts["avx2"] = "avx2" in flags
    facts["avx512f"] = "avx512f" in flags
  except OSError:
    pass
  return facts


if __name__ == "__main__":
  main()
