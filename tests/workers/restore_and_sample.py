"""Restores trained runs in a fresh process and samples each through the inference seam, in every format.

Used by tests/test_family_contract.py (one process for all configs: importing JAX and artjax once).

  python tests/workers/restore_and_sample.py JOBS.json OUT_DIR
  python tests/workers/restore_and_sample.py - OUT_DIR        # one JSON job per line on stdin, as they come

JOBS.json: [{"id": str, "workdir": str, "generative": bool, "num": int, "seed": int}, ...]. For each job:
`artjax.checkpoint.restore_model` (step and a digest of the restored weights, to compare with the
trainer's), `Sampler.from_workdir(workdir)`, then for a generative method `sample(num, seed=seed)` and
`encoders.encode(samples, fmt)` / `encoders.encode_each(samples, fmt)` for every format of the output
kind, each encoded item written to OUT_DIR/<id>/; for a method that does not sample, the error that
`sample` raises. Any exception is recorded for that job (and that format) and the next one goes on.
Writes OUT_DIR/results.json: {id: {...}} (see `run_job`).
"""

import hashlib
import json
import os
import pathlib
import sys
import time
import traceback


def digest(tree) -> str | None:
  """SHA-256 over a pytree's leaves (path, dtype, shape, bytes), in path order; None for None."""
  import jax
  import numpy as np

  if tree is None:
    return None
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for key, leaf in sorted(((jax.tree_util.keystr(k), v) for k, v in leaves), key=lambda kv: kv[0]):
    a = np.asarray(jax.device_get(leaf))
    h.update(f"{key}|{a.dtype}|{a.shape}|".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _write(out: pathlib.Path, name: str, items) -> list[dict]:
  files = []
  for i, e in enumerate(items):
    f = out / f"{name}_{i}.bin"
    data = e.data
    f.write_bytes(data if isinstance(data, (bytes, bytearray, memoryview)) else b"")
    files.append({"file": str(f), "media_type": e.media_type, "suffix": e.suffix,
                  "data_type": type(data).__name__})
  return files


def run_job(job: dict, out_root: pathlib.Path) -> dict:
  from artjax import checkpoint, encoders
  from artjax.errors import ArtjaxError
  from artjax.inference import Sampler

  res = {"ok": False, "seconds": {}}
  t0 = time.perf_counter()
  try:
    _, items, step = checkpoint.restore_model(job["workdir"])
    res.update(step=int(step), params_digest=digest(items["params"]),
               ema_digest=digest(items.get("ema_params")))
    sampler = Sampler.from_workdir(job["workdir"])
    res["kind"] = sampler.output_kind
    res["sampler_step"] = sampler.step
    res["seconds"]["restore"] = time.perf_counter() - t0
    if not job["generative"]:
      try:
        sampler.sample(job["num"], seed=job["seed"])
        res["refusal"] = None
      except ArtjaxError as e:
        res["refusal"] = str(e)
      res["ok"] = True
      return res
    t = time.perf_counter()
    samples = sampler.sample(job["num"], seed=job["seed"])
    res["seconds"]["sample"] = time.perf_counter() - t
    res.update(num=len(samples), samples_kind=samples.kind, provenance=samples.provenance)
    enc = encoders.encoder(samples.kind)
    res["formats"] = dict(enc.formats)
    out = out_root / job["id"]
    out.mkdir(parents=True, exist_ok=True)
    encoded = {}
    t = time.perf_counter()
    for fmt in enc.formats:
      for mode, fn in (("encode", encoders.encode), ("encode_each", encoders.encode_each)):
        try:
          encoded[f"{mode}/{fmt}"] = {"files": _write(out, f"{mode}_{fmt}", fn(samples, fmt))}
        except Exception:
          encoded[f"{mode}/{fmt}"] = {"error": traceback.format_exc()}
    res["encoded"] = encoded
    res["seconds"]["encode"] = time.perf_counter() - t
    # Same seed, same samples: a second call (already compiled) gives the same bytes.
    again = sampler.sample(job["num"], seed=job["seed"])
    res["repeatable"] = encoders.encode(again, enc.default)[0].data == encoders.encode(samples, enc.default)[0].data
    res["ok"] = True
  except Exception:
    res["error"] = traceback.format_exc()
  finally:
    res["seconds"]["total"] = time.perf_counter() - t0
  return res


def main(jobs_file: str, out_dir: str):
  out_root = pathlib.Path(out_dir)
  out_root.mkdir(parents=True, exist_ok=True)
  results = {}
  jobs = (json.loads(line) for line in sys.stdin if line.strip()) if jobs_file == "-" \
      else json.loads(pathlib.Path(jobs_file).read_text())
  for job in jobs:
    results[job["id"]] = run_job(job, out_root)
    # Written after every job: a crash or timeout still leaves the results so far.
    (out_root / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
  main(*sys.argv[1:])
