"""CLI: serve trained checkpoints over an OpenAI-compatible HTTP API, or manage its API keys.

  python -m artjax.serve --model NAME=WORKDIR[:STEP] [--model ...] [--host 127.0.0.1] [--port 8000]
      --keys FILE | --no-keys            # keys: required, except explicitly on a loopback host
      [--blocklist FILE] [--rpm 60] [--units-per-minute 20000] [--max-concurrency 64]
      [--max-batch 32] [--max-wait-ms 20] [--max-n 16] [--max-tokens 1024] [--max-prompt-chars 4000]
      [--max-steps 1000] [--max-frames 1024] [--max-audio-seconds 300] [--max-body-bytes 65536] [--request-log FILE] [--cors-origin URL ...]
      [--ssl-certfile F --ssl-keyfile F] [--drain-seconds 30]
  python -m artjax.serve keys add NAME --keys FILE     # prints the new key once, as the last line
  python -m artjax.serve keys list --keys FILE
  python -m artjax.serve keys revoke NAME --keys FILE

SIGTERM (or Ctrl-C) stops accepting connections, lets in-flight requests finish (up to
--drain-seconds) and exits 0.
"""

import argparse
import ipaddress
import json
import logging
import signal
import sys
import threading

from artjax.errors import ArtjaxError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
  if host in LOOPBACK_NAMES:
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def parse_model(spec: str):
  """'NAME=WORKDIR[:STEP]' -> (name, workdir, step or None)."""
  name, sep, rest = spec.partition("=")
  if not sep or not name or not rest:
    raise ArtjaxError(f"--model {spec!r}: expected NAME=WORKDIR[:STEP]")
  workdir, step = rest, None
  head, colon, tail = rest.rpartition(":")
  if colon and tail.isdigit() and head:
    workdir, step = head, int(tail)
  return name, workdir, step


def build_parser():
  p = argparse.ArgumentParser(prog="python -m artjax.serve", description=__doc__.split("\n\n")[0])
  p.add_argument("--model", action="append", required=True, metavar="NAME=WORKDIR[:STEP]",
                 help="A model to serve (repeatable).")
  p.add_argument("--host", default="127.0.0.1")
  p.add_argument("--port", type=int, default=8000)
  p.add_argument("--keys", help="API key file (python -m artjax.serve keys add NAME --keys FILE).")
  p.add_argument("--no-keys", action="store_true", help="Serve without API keys (loopback hosts only).")
  p.add_argument("--blocklist", help="Content-filter word list (one term per line; default: a small bundled one).")
  p.add_argument("--no-content-filter", action="store_true", help="Disable the content filter.")
  p.add_argument("--rpm", type=float, default=60.0, help="Requests per minute per key (0: unlimited).")
  p.add_argument("--units-per-minute", type=float, default=20000.0,
                 help="Generated samples + tokens per minute per key (0: unlimited).")
  p.add_argument("--max-concurrency", type=int, default=64, help="Requests in flight at once (then 503).")
  p.add_argument("--max-batch", type=int, default=32, help="Samples per coalesced compiled call.")
  p.add_argument("--mesh", default="", help="Hold each model's weights split over a device mesh, e.g. "
                 "'fsdp=8' (all 8 devices; sizes multiply to the device count). Default: whole on one device.")
  p.add_argument("--max-wait-ms", type=float, default=20.0, help="Longest wait for more requests to batch with "
                 "(the wait is a fifth of the model's recent sampling time, at most this; queued ones always join).")
  p.add_argument("--max-n", type=int, default=16)
  p.add_argument("--max-tokens", type=int, default=1024)
  p.add_argument("--max-prompt-chars", type=int, default=4000)
  p.add_argument("--max-steps", type=int, default=1000, help="Largest sampler `steps` (diffusion) and "
                 "`gibbs_steps` (Coconet).")
  p.add_argument("--max-frames", type=int, default=1024, help="Most music steps per sample.")
  p.add_argument("--max-audio-seconds", type=float, default=300.0, help="Longest music sample, in seconds.")
  p.add_argument("--max-body-bytes", type=int, default=64 * 1024)
  p.add_argument("--warmup-sizes", default="", help="Batch sizes compiled before /readyz says ready, e.g. 1,8 "
                 "(default: every power of two up to --max-batch, the sizes coalesced batches take).")
  p.add_argument("--request-log", help="Append one JSON line per request here (no prompts or outputs).")
  p.add_argument("--cors-origin", action="append", default=[], help="Allow browser calls from this origin.")
  p.add_argument("--ssl-certfile")
  p.add_argument("--ssl-keyfile")
  p.add_argument("--drain-seconds", type=float, default=30.0, help="On SIGTERM, wait this long for requests.")
  return p


def serve(argv) -> int:
  args = build_parser().parse_args(argv)
  if args.keys and args.no_keys:
    raise ArtjaxError("give --keys FILE or --no-keys, not both")
  if not args.keys and not args.no_keys:
    raise ArtjaxError("API keys are required: pass --keys FILE (create one with `python -m artjax.serve keys "
                      "add NAME --keys FILE`), or --no-keys to serve without them on a loopback host")
  if args.no_keys and not is_loopback(args.host):
    raise ArtjaxError(f"--no-keys is refused on the non-loopback host {args.host!r}: anyone who can reach it "
                      f"could use the models; pass --keys FILE")
  specs = [parse_model(s) for s in args.model]
  names = [s[0] for s in specs]
  if len(set(names)) != len(names):
    raise ArtjaxError(f"--model names must be unique, got {', '.join(names)}")
  import uvicorn

  from artjax.serve.app import Server, Settings, create_app
  from artjax.serve.content_filter import WordListFilter, default_filter
  from artjax.serve.keys import KeyStore
  from artjax.serve.limits import RateLimiter

  keystore = KeyStore(args.keys) if args.keys else None
  if keystore is not None and not len(keystore):
    raise ArtjaxError(f"the key file {args.keys} holds no keys; add one with `python -m artjax.serve keys add "
                      f"NAME --keys {args.keys}`")
  content_filter = None if args.no_content_filter else (
      WordListFilter.from_file(args.blocklist) if args.blocklist else default_filter())
  settings = Settings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_concurrency=args.max_concurrency,
                      max_body_bytes=args.max_body_bytes, max_n=args.max_n, max_tokens=args.max_tokens,
                      max_prompt_chars=args.max_prompt_chars, max_steps=args.max_steps,
                      max_frames=args.max_frames, max_audio_seconds=args.max_audio_seconds,
                      warmup_sizes=tuple(int(x) for x in args.warmup_sizes.split(",") if x) or None,
                      cors_origins=tuple(args.cors_origin))
  request_log = None
  if args.request_log:
    lock, f = threading.Lock(), open(args.request_log, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def request_log(row):
      with lock:
        f.write(json.dumps(row) + "\n")

  def loader():
    from artjax.inference import Sampler

    mesh = None
    if args.mesh:
      from artjax.train.sharding import make_mesh, parse_mesh

      mesh = make_mesh(parse_mesh(args.mesh))
    return {name: Sampler.from_workdir(workdir, step, name=name, max_batch=args.max_batch, mesh=mesh)
            for name, workdir, step in specs}

  server = Server(loader, settings, keystore=keystore, content_filter=content_filter,
                  rate_limiter=RateLimiter(args.rpm or None, args.units_per_minute or None),
                  request_log=request_log)
  app = create_app(server)
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax's notes on read-only checkpoint managers
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
  print(f"artjax serving {', '.join(names)} on http{'s' if args.ssl_certfile else ''}://{args.host}:{args.port} "
        f"(playground at /, API at /v1; ready when /readyz says so)", flush=True)
  # uvicorn drains on SIGTERM, restores the handler it found and re-raises the signal: with this
  # no-op handler in place the re-raise is a no-op too, so a drained shutdown exits 0.
  signal.signal(signal.SIGTERM, lambda signum, frame: None)
  uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
              timeout_graceful_shutdown=args.drain_seconds, ssl_certfile=args.ssl_certfile,
              ssl_keyfile=args.ssl_keyfile)
  return 0


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] == "keys":
    from artjax.serve import keys

    return keys.main(argv[1:])
  try:
    return serve(argv)
  except ArtjaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
