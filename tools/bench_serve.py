r"""Throughput and latency of `python -m artjax.serve` against the raw in-process Sampler, same run.

  python tools/bench_serve.py --image-workdir runs/bench_digits --text-workdir runs/bench_shakespeare \
      [--seconds 20] [--concurrency 1,8,32] [--max-batch 32] [--image-n 1] [--json out.json]

Starts the server as a subprocess on 127.0.0.1 (no keys, no rate limits, warm-up of every batch size),
waits for /readyz, and always terminates it. For each model and each concurrency level C, C asyncio
clients (one httpx.AsyncClient each) send requests back to back (n=1 image / max_tokens=64 text, one
prompt, a fixed seed per request) for `--seconds` or `--max-requests`, whichever ends first, after
`--warmup-seconds` of unmeasured traffic (compiles the batch sizes that level produces). Then the raw
Sampler (loaded in this process from the same checkpoint) does the same work: as many requests as the
server answered, through `Sampler.run` in calls of min(C, max_batch / n) requests, the batch the server
coalesces at saturation (each client has one request outstanding). Printed per level: requests/s,
samples/s (images) or completion tokens/s (text, from `usage`), p50/p99 latency, the server's mean batch
(from /metrics), CPU ms per request of the server process and of this load generator (both share the
machine), and the server / raw throughput ratio.

Everything is bounded: each level by time and count, each request by --request-timeout, the server's
start by --startup-timeout. Loopback only. `--profile FILE` runs the server under cProfile.
"""

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TEXT_PROMPT = "ROMEO:"


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--image-workdir", default="runs/bench_digits", help="A trained image run ('' to skip).")
  p.add_argument("--text-workdir", default="runs/bench_shakespeare", help="A trained language run ('' to skip).")
  p.add_argument("--seconds", type=float, default=20.0, help="Measured seconds per concurrency level.")
  p.add_argument("--warmup-seconds", type=float, default=3.0, help="Unmeasured traffic before each level.")
  p.add_argument("--max-requests", type=int, default=20000, help="Most requests per level (all clients).")
  p.add_argument("--concurrency", default="1,8,32", help="Comma-separated client counts.")
  p.add_argument("--max-batch", type=int, default=32, help="The server's --max-batch (and the raw batch cap).")
  p.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each text request.")
  p.add_argument("--image-n", type=int, default=1, help="Images per image request (n).")
  p.add_argument("--max-wait-ms", type=float, default=None, help="The server's --max-wait-ms (default: its own).")
  p.add_argument("--port", type=int, default=0, help="Server port (0: a free one).")
  p.add_argument("--startup-timeout", type=float, default=600.0, help="Seconds to wait for /readyz.")
  p.add_argument("--request-timeout", type=float, default=120.0, help="Seconds per HTTP request.")
  p.add_argument("--no-raw", action="store_true", help="Skip the in-process Sampler runs.")
  p.add_argument("--json", help="Also write the results to this JSON file.")
  p.add_argument("--profile", help="Run the server under cProfile and write its event-loop thread's profile "
                 "here (slows the server; for finding where the time goes, not for the table).")
  args = p.parse_args(argv)
  args.levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
  if not args.levels or min(args.levels) < 1:
    p.error("--concurrency: positive integers, e.g. 1,8,32")
  if args.seconds <= 0 or args.max_requests < 1:
    p.error("--seconds and --max-requests must be positive")
  if not (args.image_workdir or args.text_workdir):
    p.error("give --image-workdir and/or --text-workdir")
  return args


# --- the server subprocess ------------------------------------------------------------------------

def free_port() -> int:
  with socket.socket() as s:
    s.bind((HOST, 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def server_process(models: dict, args, log_path):
  """Runs `python -m artjax.serve` for {name: workdir} until the block ends (always terminated)."""
  port = args.port or free_port()
  profile = ["-m", "cProfile", "-o", str(pathlib.Path(args.profile).resolve())] if args.profile else []
  cmd = [sys.executable, *profile, "-m", "artjax.serve", *[f"--model={n}={w}" for n, w in models.items()],
         "--no-keys", "--host", HOST, "--port", str(port), "--rpm", "0", "--units-per-minute", "0",
         "--max-concurrency", "1000", "--max-batch", str(args.max_batch), "--drain-seconds", "5",
         *(["--max-wait-ms", str(args.max_wait_ms)] if args.max_wait_ms is not None else []),
         "--warmup-sizes", ",".join(str(1 << i) for i in range(args.max_batch.bit_length())
                                    if 1 << i <= args.max_batch)]
  log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115  closed below
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
  try:
    yield proc, f"http://{HOST}:{port}", cmd
  finally:
    if proc.poll() is None:
      proc.send_signal(signal.SIGTERM)
      try:
        proc.wait(20)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    log.close()


def wait_ready(proc, base: str, timeout: float, log_path) -> float:
  import httpx

  t = time.monotonic()
  while time.monotonic() - t < timeout:
    if proc.poll() is not None:
      raise RuntimeError(f"the server exited ({proc.returncode}):\n{tail(log_path)}")
    try:
      r = httpx.get(base + "/readyz", timeout=5)
      if r.status_code == 200:
        return time.monotonic() - t
      if "failed" in r.text:
        raise RuntimeError(f"the server could not load its models: {r.text}")
    except httpx.TransportError:
      pass
    time.sleep(0.5)
  raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{tail(log_path)}")


def tail(path, n=30) -> str:
  try:
    return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-n:])
  except OSError:
    return ""


# --- clients ----------------------------------------------------------------------------------------

def request_for(kind: str, model: str, seed: int, max_tokens: int, image_n: int = 1):
  if kind == "image":
    return "/v1/images/generations", {"model": model, "n": image_n, "seed": seed}
  return "/v1/completions", {"model": model, "prompt": TEXT_PROMPT, "max_tokens": max_tokens, "n": 1,
                             "seed": seed}


def units_of(kind: str, body: dict) -> int:
  if kind == "image":
    return len(body.get("data", []))
  return int(body.get("usage", {}).get("completion_tokens", 0))


async def load(base: str, kind: str, model: str, clients: int, seconds: float, max_requests: int,
               max_tokens: int, request_timeout: float, seed0: int, image_n: int = 1) -> dict:
  """`clients` clients back to back for `seconds` (or `max_requests` in all); latencies and units."""
  import httpx

  latencies, units, errors = [], 0, {}
  sent = 0
  start = time.perf_counter()
  end = start + seconds

  async def one_client(c):
    # One AsyncClient (one keep-alive connection) per simulated client: a single shared client's
    # connection pool costs the load generator ~3x the CPU per request at 32 connections (httpcore).
    nonlocal sent, units
    async with httpx.AsyncClient(base_url=base, timeout=request_timeout) as client:
      while time.perf_counter() < end and sent < max_requests:
        seed = seed0 + sent
        sent += 1
        path, payload = request_for(kind, model, seed, max_tokens, image_n)
        t = time.perf_counter()
        try:
          r = await client.post(path, json=payload)
        except httpx.HTTPError as e:
          errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
          continue
        dt = time.perf_counter() - t
        if r.status_code != 200:
          key = f"{r.status_code}: {r.text[:200]}"
          errors[key] = errors.get(key, 0) + 1
          continue
        latencies.append(dt)
        units += units_of(kind, r.json())

  cpu = time.process_time()
  await asyncio.gather(*[one_client(c) for c in range(clients)])
  wall = time.perf_counter() - start
  cpu = time.process_time() - cpu
  lat = np.asarray(latencies) if latencies else np.zeros(1)
  return {"requests": len(latencies), "units": units, "wall_s": wall, "errors": errors,
          "requests_per_s": len(latencies) / wall, "units_per_s": units / wall,
          "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
          "client_cpu_s": cpu}


def server_cpu_seconds(pid: int) -> float:
  """User + system CPU seconds of a process (Linux /proc), or nan."""
  try:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
  except (OSError, IndexError, ValueError):
    return float("nan")


def batch_sizes(base: str, model: str) -> dict:
  """The server's batch-size histogram of `model` ({'count', 'mean'}) from /metrics."""
  import httpx

  count = total = 0.0
  try:
    text = httpx.get(base + "/metrics", timeout=10).text
  except httpx.HTTPError:
    return {}
  for line in text.splitlines():
    if line.startswith("artjax_batch_size_count") and f'model="{model}"' in line:
      count = float(line.split()[-1])
    elif line.startswith("artjax_batch_size_sum") and f'model="{model}"' in line:
      total = float(line.split()[-1])
  return {"count": count, "sum": total}


# --- the raw Sampler ----------------------------------------------------------------------------------

def raw_run(sampler, kind: str, requests: int, batch: int, max_tokens: int, seconds: float, seed0: int,
            n: int = 1, max_batch: int = 32) -> dict:
  """`requests` requests of `n` samples through `Sampler.run`, `batch` requests per call (at most
  `max_batch` samples per compiled call, as the server); stops after ~2 x seconds."""
  from artjax.inference import Request

  options = sampler.check({} if kind == "image" else {"prompt": TEXT_PROMPT, "max_tokens": max_tokens})
  # Warm: compile every size this run uses.
  for size in {min(batch, requests), requests % batch or batch}:
    sampler.run([Request(n, seed0 - 1 - i, options) for i in range(size)], max_batch)
  units = done = 0
  t = time.perf_counter()
  while done < requests and time.perf_counter() - t < 2 * seconds:
    size = min(batch, requests - done)
    out = sampler.run([Request(n, seed0 + done + i, options) for i in range(size)], max_batch)
    done += size
    units += sum(len(s.items) if kind == "image" else sum(c.completion_tokens for c in s.items) for s in out)
  wall = time.perf_counter() - t
  return {"requests": done, "units": units, "wall_s": wall, "requests_per_s": done / wall,
          "units_per_s": units / wall, "batch": batch, "n": n}


# --- main -------------------------------------------------------------------------------------------

def machine() -> dict:
  import jax

  return {"python": platform.python_version(), "jax": jax.__version__, "backend": jax.default_backend(),
          "cpus": os.cpu_count(), "platform": platform.platform(),
          "loadavg_at_start": list(os.getloadavg())}


def table(results: list, levels: list) -> str:
  head = ("| model | clients | server req/s | server units/s | p50 ms | p99 ms | mean batch | raw units/s "
          "| server / raw | server CPU ms/req | client CPU ms/req | errors |")
  rows = [head, "|---|" + "---:|" * 11]
  for r in results:
    unit = "img" if r["kind"] == "image" else "tok"
    s, raw = r["server"], r.get("raw")
    ratio = f"{s['units_per_s'] / raw['units_per_s']:.0%}" if raw and raw["units_per_s"] else "-"
    rows.append(f"| {r['model']} ({r['kind']}) | {r['clients']} | {s['requests_per_s']:.1f} | "
                f"{s['units_per_s']:.1f} {unit} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | "
                f"{r.get('mean_batch', float('nan')):.1f} | "
                f"{(raw['units_per_s'] if raw else float('nan')):.1f} {unit} | {ratio} | "
                f"{s['server_cpu_ms_per_request']:.2f} | {s['client_cpu_ms_per_request']:.2f} | "
                f"{sum(s['errors'].values())} |")
  return "\n".join(rows)


def main(argv=None) -> int:
  args = parse_args(argv)
  # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the server subprocess is always terminated.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.ERROR)
  models = {}
  if args.image_workdir:
    models["img"] = ("image", args.image_workdir)
  if args.text_workdir:
    models["txt"] = ("text", args.text_workdir)
  for name, (_, w) in models.items():
    if not (pathlib.Path(w) / "checkpoints").is_dir():
      print(f"error: {w} holds no checkpoints (train it first; see experiments/serve.md)", file=sys.stderr)
      return 2
  info = {"machine": machine(), "args": {k: v for k, v in vars(args).items()}, "results": []}
  t_all = time.perf_counter()
  samplers = {}
  if not args.no_raw:
    from artjax.inference import Sampler

    for name, (_, w) in models.items():
      samplers[name] = Sampler.from_workdir(w, name=name, max_batch=args.max_batch)

  log_path = pathlib.Path(tempfile.gettempdir()) / f"bench_serve_{os.getpid()}.log"
  with server_process({n: w for n, (_, w) in models.items()}, args, log_path) as (proc, base, cmd):
    info["server_command"] = " ".join(cmd[1:])
    ready = wait_ready(proc, base, args.startup_timeout, log_path)
    info["server_ready_s"] = ready
    print(f"server ready in {ready:.1f}s (pid {proc.pid}, {base})", flush=True)
    for name, (kind, _) in models.items():
      for level in args.levels:
        seed0 = 1_000_000 * level
        n = args.image_n if kind == "image" else 1
        asyncio.run(load(base, kind, name, level, args.warmup_seconds, args.max_requests, args.max_tokens,
                         args.request_timeout, seed0 + 500_000, n))
        before = batch_sizes(base, name)
        cpu0 = server_cpu_seconds(proc.pid)
        s = asyncio.run(load(base, kind, name, level, args.seconds, args.max_requests, args.max_tokens,
                             args.request_timeout, seed0, n))
        s["server_cpu_s"] = server_cpu_seconds(proc.pid) - cpu0
        s["server_cpu_ms_per_request"] = s["server_cpu_s"] / max(1, s["requests"]) * 1e3
        s["client_cpu_ms_per_request"] = s["client_cpu_s"] / max(1, s["requests"]) * 1e3
        after = batch_sizes(base, name)
        row = {"model": name, "kind": kind, "clients": level, "server": s}
        if before and after and after["count"] > before["count"]:
          row["mean_batch"] = (after["sum"] - before["sum"]) / (after["count"] - before["count"])
          row["batches"] = after["count"] - before["count"]
        if not args.no_raw and s["requests"]:
          row["raw"] = raw_run(samplers[name], kind, s["requests"], max(1, min(level, args.max_batch // n)),
                               args.max_tokens, args.seconds, seed0, n, args.max_batch)
          row["ratio"] = s["units_per_s"] / row["raw"]["units_per_s"]
        info["results"].append(row)
        raw = row.get("raw", {})
        print(f"{name} x{level}: server {s['requests_per_s']:.1f} req/s {s['units_per_s']:.1f} units/s "
              f"p50 {s['p50_ms']:.0f} ms p99 {s['p99_ms']:.0f} ms (mean batch {row.get('mean_batch', 0):.1f}, "
              f"server cpu {s['server_cpu_s']:.1f}s, client cpu {s['client_cpu_s']:.1f}s"
              f"{', errors ' + str(s['errors']) if s['errors'] else ''}); raw {raw.get('units_per_s', 0):.1f} "
              f"units/s; ratio {row.get('ratio', float('nan')):.0%}", flush=True)
    if proc.poll() is not None:
      print(f"warning: the server exited early:\n{tail(log_path)}", file=sys.stderr)
  info["wall_s"] = time.perf_counter() - t_all
  info["machine"]["loadavg_at_end"] = list(os.getloadavg())
  print()
  print(table(info["results"], args.levels))
  top = max(args.levels)
  for r in info["results"]:
    if r["clients"] == top and "ratio" in r:
      print(f"{r['model']}: server / raw throughput at {top} clients = {r['ratio']:.0%} (target >= 80%)")
  print(f"total wall {info['wall_s']:.0f}s; jax {info['machine']['jax']} on {info['machine']['backend']}, "
        f"{info['machine']['cpus']} CPUs")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(info, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
