"""artjax.serve: the official openai client against a live server, auth, limits, filtering, batching, ops."""

import base64
import concurrent.futures
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

openai = pytest.importorskip("openai")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_server(runs, keys, *extra, port=None):
  port = port or free_port()
  cmd = [sys.executable, "-m", "artjax.serve", "--model", f"txt={runs['text']}", "--model", f"poem={runs['poetry']}",
         "--model", f"img={runs['image']}", "--keys", str(keys), "--host", "127.0.0.1", "--port", str(port),
         "--warmup-sizes", "1", *extra]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  base = f"http://127.0.0.1:{port}"
  deadline = time.monotonic() + 180
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise AssertionError(f"server exited {proc.returncode}: {proc.stdout.read()}")
    try:
      if httpx.get(base + "/readyz", timeout=2).status_code == 200:
        return proc, base
    except httpx.HTTPError:
      pass
    time.sleep(0.3)
  proc.kill()
  raise AssertionError("server not ready within 180 s")


def stop(proc):
  if proc.poll() is None:
    proc.terminate()
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
  from artjax.serve.keys import KeyStore

  path = tmp_path_factory.mktemp("keys") / "keys.json"
  return path, KeyStore(path).add("tester")


@pytest.fixture(scope="module")
def live(served_runs, key_file):
  path, key = key_file
  proc, base = start_server(served_runs, path, "--request-log", str(path.parent / "requests.jsonl"))
  try:
    yield base, key, openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)
  finally:
    stop(proc)


# --- the official client, live ---------------------------------------------------------------------

def test_models_list(live):
  _, _, client = live
  models = {m.id: m for m in client.models.list().data}
  assert set(models) == {"txt", "poem", "img"}
  img = models["img"].model_extra["artjax"]
  assert img["output_kind"] == "image" and img["image_size"] == [16, 16] and img["classes"][7] == "7"
  txt = {o["name"]: o for o in models["txt"].model_extra["artjax"]["options"]}
  assert txt["top_p"]["maximum"] == 1.0 and txt["stop"]["max_items"] == 4


def test_completions_n_stop_seed_and_stream(live):
  _, _, client = live
  kw = dict(model="txt", prompt="ROMEO:", max_tokens=30, temperature=1.0)
  a = client.completions.create(n=2, seed=3, **kw)
  b = client.completions.create(n=2, seed=3, **kw)
  c = client.completions.create(n=2, seed=4, **kw)
  texts = [ch.text for ch in a.choices]
  assert texts == [ch.text for ch in b.choices] and texts != [ch.text for ch in c.choices]
  assert len(texts) == 2 and texts[0] != texts[1]
  assert a.usage.completion_tokens == sum(len(t) for t in texts) and a.usage.prompt_tokens == 6
  stop = texts[0][5:7]  # a string the first choice is known to contain
  for s in (stop, [stop, "zzzz"]):
    cut = client.completions.create(n=2, seed=3, stop=s, **kw).choices
    assert cut[0].text == texts[0][:texts[0].find(stop)] and stop not in cut[0].text
    assert cut[0].finish_reason == "stop"
  echoed = client.completions.create(n=1, seed=3, echo=True, **kw).choices[0].text
  assert echoed == "ROMEO:" + texts[0]
  stream = client.completions.create(n=2, seed=3, stream=True, stop=stop, stream_options={"include_usage": True},
                                     **kw)
  parts, reasons, usage = {0: "", 1: ""}, {}, None
  for chunk in stream:
    usage = chunk.usage or usage
    for ch in chunk.choices:
      parts[ch.index] += ch.text
      if ch.finish_reason:
        reasons[ch.index] = ch.finish_reason
  assert parts[0] == texts[0][:texts[0].find(stop)] and stop not in parts[0]
  assert set(reasons) == {0, 1} and usage.completion_tokens == len(parts[0]) + len(parts[1])
  # A list of prompts numbers its choices on from one seed: choice k is sample k of that seed.
  both = client.completions.create(prompt=["ROMEO:", "ROMEO:"], n=1, seed=3, model="txt", max_tokens=30)
  assert [c.text for c in both.choices] == texts and [c.index for c in both.choices] == [0, 1]


def test_poem_with_form_and_acrostic(live):
  _, _, client = live
  out = client.completions.create(model="poem", prompt="", n=2, seed=0,
                                  extra_body={"form": "五言绝句", "acrostic": "春夏秋冬", "script": "simplified"})
  from artjax.methods import poetry

  for choice in out.choices:
    lines = [l for l in choice.text.replace("，", "\n").replace("。", "\n").split("\n") if l]
    assert [l[0] for l in lines] == list("春夏秋冬") and all(len(l) == 5 for l in lines)
    assert poetry.check_form(choice.text.replace("\n", ""), 5, 4, "春夏秋冬") == []


def test_images_b64_json_and_class_prompt(live):
  _, _, client = live
  out = client.images.generate(model="img", prompt="7", n=3, response_format="b64_json", size="16x16",
                               extra_body={"seed": 5})
  assert len(out.data) == 3
  for d in out.data:
    png = Image.open(io.BytesIO(base64.b64decode(d.b64_json)))
    assert png.format == "PNG" and png.size == (16, 16)
    meta = json.loads(png.text["artjax"])  # provenance travels in the file
    assert meta["options"]["label"] == 7 and meta["seed"] == 5 and meta["step"] == 4
  again = client.images.generate(model="img", prompt="7", n=3, response_format="b64_json", extra_body={"seed": 5})
  assert [d.b64_json for d in again.data] == [d.b64_json for d in out.data]
  with pytest.raises(openai.BadRequestError) as e:
    client.images.generate(model="img", prompt="7", size="1024x1024", response_format="b64_json")
  assert e.value.body["param"] == "size" and "16x16" in e.value.body["message"]
  with pytest.raises(openai.BadRequestError) as e:
    client.images.generate(model="img", prompt="7", response_format="url")
  assert e.value.body["param"] == "response_format"
  with pytest.raises(openai.BadRequestError) as e:
    client.images.generate(model="img", prompt="a giraffe", response_format="b64_json")
  assert e.value.body["param"] == "prompt" and "0, 1, 2" in e.value.body["message"]


def test_keys_and_errors_live(live, key_file):
  base, key, client = live
  bad = openai.OpenAI(base_url=base + "/v1", api_key="ajx-wrong", max_retries=0)
  with pytest.raises(openai.AuthenticationError):
    bad.models.list()
  r = httpx.post(base + "/v1/completions", json={"model": "txt"})
  assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
  assert httpx.get(base + "/healthz").status_code == 200  # public
  with pytest.raises(openai.BadRequestError) as e:
    client.completions.create(model="txt", prompt="a", logprobs=2)
  assert e.value.body["param"] == "logprobs"
  with pytest.raises(openai.NotFoundError):
    client.completions.create(model="nope", prompt="a")
  with pytest.raises(openai.BadRequestError) as e:  # an image model on the text endpoint
    client.completions.create(model="img", prompt="a")
  r = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"})
  assert r.headers["x-request-id"].startswith("req-")
  metrics = httpx.get(base + "/metrics", headers={"Authorization": f"Bearer {key}"}).text
  assert "artjax_requests_total" in metrics and "artjax_batch_size_bucket" in metrics
  log = (key_file[0].parent / "requests.jsonl").read_text().splitlines()
  rows = [json.loads(l) for l in log]
  assert any(r["status"] == 401 for r in rows) and all(r["key_id"] in (None, "tester") for r in rows)
  assert key not in "\n".join(log) and "ROMEO" not in "\n".join(log)  # no keys, no prompts


def test_sigterm_drains_in_flight_requests(served_runs, key_file):
  path, key = key_file
  proc, base = start_server(served_runs, path, "--max-wait-ms", "500")
  try:
    result = {}

    def slow():  # long enough to be in flight when SIGTERM arrives
      result["r"] = httpx.post(base + "/v1/completions", headers={"Authorization": f"Bearer {key}"}, timeout=120,
                               json={"model": "txt", "prompt": "a", "max_tokens": 1000, "n": 16, "seed": 1})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    t.join(120)
    assert result["r"].status_code == 200 and len(result["r"].json()["choices"]) == 16
    assert proc.wait(60) == 0
    with pytest.raises(httpx.HTTPError):
      httpx.get(base + "/healthz", timeout=2)
  finally:
    stop(proc)


# --- in-process: limits, filter, readiness, batching ------------------------------------------------

def make_app(runs, gate=None, **kw):
  from artjax.inference import Sampler
  from artjax.serve.app import Server, Settings, create_app

  def loader():
    if gate is not None:
      assert gate.wait(120)
    return {"txt": Sampler.from_workdir(runs["text"], name="txt"),
            "img": Sampler.from_workdir(runs["image"], name="img")}

  settings = Settings(**{"max_n": 8, "max_tokens": 64, "max_body_bytes": 2048, "warmup_sizes": (1,),
                         **kw.pop("settings", {})})
  server = Server(loader, settings, **kw)
  return server, create_app(server)


def wait_ready(client):
  deadline = time.monotonic() + 120
  while client.get("/readyz").status_code != 200:
    assert time.monotonic() < deadline
    time.sleep(0.1)


def test_readyz_waits_for_warm_up_and_compiles_stay_flat(served_runs):
  from fastapi.testclient import TestClient

  gate = threading.Event()
  server, app = make_app(served_runs, gate)
  with TestClient(app) as client:
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
    r = client.post("/v1/completions", json={"model": "txt", "prompt": "a"})
    assert r.status_code == 503
    gate.set()
    wait_ready(client)
    warm = {n: s.traces for n, s in server.models.items()}
    assert all(v > 0 for v in warm.values())  # compiled before ready
    for seed in range(3):
      assert client.post("/v1/completions", json={"model": "txt", "prompt": "ab" * (seed + 1), "seed": seed,
                                                  "max_tokens": 16}).status_code == 200
      assert client.post("/v1/images/generations", json={"model": "img", "prompt": str(seed),
                                                         "seed": seed}).status_code == 200
    assert {n: s.traces for n, s in server.models.items()} == warm
    # artjax's generic endpoint serves any output kind through its encoder (no per-kind server code)
    r = client.post("/v1/samples", json={"model": "img", "n": 2, "seed": 1, "options": {"label": 3}}).json()
    assert [d["media_type"] for d in r["data"]] == ["image/png"] * 2 and r["artjax"]["options"] == {"label": 3}
    png = Image.open(io.BytesIO(base64.b64decode(r["data"][0]["b64"])))
    assert png.size == (16, 16) and "workdir" not in json.loads(png.text["artjax"])
    r = client.post("/v1/samples", json={"model": "txt", "seed": 1, "options": {"prompt": "ab", "max_tokens": 16}})
    assert r.json()["data"][0]["text"].startswith("ab")
    r = client.post("/v1/samples", json={"model": "txt", "options": {"guidance": 2.0}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "guidance"
    after = {n: s.traces for n, s in server.models.items()}  # n=2 is a new batch bucket: one compile
    client.post("/v1/samples", json={"model": "img", "n": 2, "seed": 9, "options": {"label": 5}})
    assert {n: s.traces for n, s in server.models.items()} == after


def test_concurrent_requests_coalesce_and_match_sequential(served_runs):
  from fastapi.testclient import TestClient

  server, app = make_app(served_runs, settings={"max_wait_ms": 300.0})
  with TestClient(app) as client:
    wait_ready(client)
    body = lambda s: {"model": "img", "n": 2, "seed": s, "label": s % 10}  # noqa: E731
    alone = [client.post("/v1/images/generations", json=body(s)).json()["data"] for s in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
      together = list(pool.map(lambda s: client.post("/v1/images/generations", json=body(s)).json()["data"],
                               range(6)))
    decode = lambda data: [np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"])))) for d in data]  # noqa: E731
    for a, b in zip(alone, together):
      np.testing.assert_allclose(np.stack(decode(a)), np.stack(decode(b)), atol=2)
    text = client.get("/metrics").text
    sizes = [float(l.split()[-1]) for l in text.splitlines() if l.startswith('artjax_batch_size_sum{model="img"}')]
    counts = [float(l.split()[-1]) for l in text.splitlines()
              if l.startswith('artjax_batch_size_count{model="img"}')]
    assert sizes[0] / counts[0] > 2.0  # the concurrent requests shared runs (6 lone runs of 2 would give 2.0)


def test_rate_limits_and_size_limits(served_runs):
  from fastapi.testclient import TestClient

  from artjax.serve.keys import KeyStore
  from artjax.serve.limits import RateLimiter

  store = KeyStore(os.path.join(os.environ["TMPDIR"], "k.json"))
  key = store.add("alice")
  server, app = make_app(served_runs, keystore=store, rate_limiter=RateLimiter(2, 100),
                         settings={"cors_origins": ("http://localhost:5173",)})
  h = {"Authorization": f"Bearer {key}"}
  with TestClient(app) as client:
    wait_ready(client)
    ok = {"model": "txt", "prompt": "a", "max_tokens": 8}
    assert client.post("/v1/completions", json=ok, headers=h).status_code == 200
    assert client.post("/v1/completions", json=ok, headers=h).status_code == 200
    r = client.post("/v1/completions", json=ok, headers=h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"
    for body, param in [({"max_tokens": 65}, "max_tokens"), ({"n": 9}, "n"), ({"temperature": -1}, "temperature"),
                        ({"top_p": 1.5}, "top_p"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
                        ({"frobnicate": 1}, "frobnicate"), ({"n": "two"}, "n"), ({"form": "五言绝句"}, None)]:
      r = client.post("/v1/completions", json={**ok, **body}, headers=h)
      assert r.status_code == 400, (body, r.text)
      err = r.json()["error"]
      assert set(err) == {"message", "type", "param", "code"} and (param is None or err["param"] == param), err
    r = client.post("/v1/completions", content=b'{"prompt": "' + b"a" * 4000 + b'"}', headers=h)
    assert r.status_code == 413 and "2048" in r.json()["error"]["message"]
    chunked = (part for part in [b'{"model": "txt", "prompt": "', b"a" * 3000, b'"}'])  # no Content-Length
    r = client.post("/v1/completions", content=chunked, headers=h)
    assert r.status_code == 413
    r = client.post("/v1/completions", content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    for body, param in [({"seed": 2 ** 64}, "seed"), ({"top_k": 3_000_000_000}, "top_k"),
                        ({"temperature": 1e39}, "temperature")]:
      r = client.post("/v1/completions", json={**ok, **body}, headers=h)
      assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    lone_surrogate = b'{"model": "txt", "prompt": "a\\ud800", "max_tokens": 8}'  # valid JSON, not valid text
    r = client.post("/v1/completions", content=lone_surrogate, headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text
    r = client.options("/v1/completions", headers={"Origin": "http://localhost:5173",
                                                   "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:5173"
    r = client.get("/v1/models", headers={"Origin": "http://localhost:5173"})  # an error still carries CORS
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://localhost:5173"
    KeyStore(store.path).revoke("alice")  # revoked with the CLI while the server runs
    assert client.get("/v1/models", headers=h).status_code == 401


def test_content_filter_both_ways(served_runs):
  from fastapi.testclient import TestClient

  from artjax.serve.content_filter import WordListFilter

  words = WordListFilter(["forbidden", "禁止"])

  def flt(text):  # the word list, plus a stand-in output classifier that flags any 'a'
    return words(text) or ("letter a" if "a" in text else None)

  server, app = make_app(served_runs, content_filter=flt)
  with TestClient(app) as client:
    wait_ready(client)
    for prompt in ("a forbidden word", "这是禁止的"):
      r = client.post("/v1/completions", json={"model": "txt", "prompt": prompt})
      assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
    r = client.post("/v1/images/generations", json={"model": "img", "prompt": "forbidden"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
    choices = client.post("/v1/completions", json={"model": "txt", "prompt": "ROMEO:", "n": 8, "max_tokens": 40,
                                                   "seed": 0}).json()["choices"]
    flagged = [c for c in choices if c["finish_reason"] == "content_filter"]
    assert flagged and all(c["text"] == "" for c in flagged)
    assert all("a" not in c["text"] for c in choices)
    # /v1/samples filters the generated text whatever format carries it (JSON too), and withholds them all.
    body = {"model": "txt", "n": 8, "seed": 0, "options": {"prompt": "ROMEO:", "max_tokens": 40},
            "response_formats": ["json", "text"]}
    data = client.post("/v1/samples", json=body).json()["data"]
    flagged = [d for d in data if d["finish_reason"] == "content_filter"]
    assert flagged and all(d["text"] == "" and "b64" not in d and "files" not in d for d in flagged)
    for d in data:
      for f in d.get("files", {}).values():
        assert "a" not in base64.b64decode(f["b64"]).decode("utf-8").split('"samples"')[1]


def test_serve_cli_refuses_unsafe_setups(served_runs, tmp_path):
  from conftest import run_cli

  p = run_cli("-m", "artjax.serve", "--model", f"x={served_runs['text']}", "--no-keys", "--host", "0.0.0.0")
  assert p.returncode == 2 and "non-loopback" in p.stderr
  p = run_cli("-m", "artjax.serve", "--model", f"x={served_runs['text']}")
  assert p.returncode == 2 and "--keys" in p.stderr
  p = run_cli("-m", "artjax.serve", "keys", "add", "bob", "--keys", str(tmp_path / "k.json"))
  key = p.stdout.strip().splitlines()[-1]
  assert p.returncode == 0 and key.startswith("ajx-") and key not in (tmp_path / "k.json").read_text()


def test_prompts_name_classes():
  from artjax.serve.app import ApiError, _class_of

  fashion = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
  for prompt, label in [("t-shirt", 0), ("a T-shirt/top please", 0), ("top", 0), ("shirt", 6), ("sneakers", 7),
                        ("boot", 9), ("an ankle boot", 9)]:
    assert _class_of(prompt, fashion) == label, prompt
  assert _class_of("7", [str(i) for i in range(10)]) == 7
  for bad in ("a giraffe", "a shirt and a bag"):
    with pytest.raises(ApiError):
      _class_of(bad, fashion)
