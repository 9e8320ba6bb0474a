"""Schemathesis against the live app: generated requests to every documented operation.

The app runs in-process (Starlette's TestClient, so the lifespan loads and warms the models) over
tiny trained runs (a character LM, a Tang-poetry LM, a class-conditional GAN). Schemathesis generates
valid (positive) and schema-violating (negative) requests from the app's own OpenAPI document; each
is sent with a valid API key. Every answer must be below 500, and every 4xx body an OpenAI error
object {"error": {"message", "type", "param", "code"}}. Problems are collected over all cases of an
operation and reported together (with the request that caused each).
"""

import collections
import json
import os
import time

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.testclient import TestClient


# (method, path) of every operation in the app's OpenAPI document (checked against the document below).
OPERATIONS = [("GET", "/v1/models"), ("GET", "/v1/models/{model_id}"), ("POST", "/v1/completions"),
              ("POST", "/v1/images/generations"), ("POST", "/v1/samples"), ("POST", "/v1/audio/music")]
# Cases per operation; ARTJAX_FUZZ_SCALE=10 runs ten times as many, with fresh random draws each run.
SCALE = int(os.environ.get("ARTJAX_FUZZ_SCALE", "1"))
EXAMPLES = {GenerationMode.POSITIVE: 25 * SCALE, GenerationMode.NEGATIVE: 15 * SCALE}
SERVED = ("txt", "poem", "img", "mus")


def _steered(operation, mode):
  """The operation's cases, most of them naming a served model (random ids would all be 404s)."""
  def name(pair):
    case, model = pair
    if model is not None:
      if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = model
      if isinstance(case.path_parameters, dict) and isinstance(case.path_parameters.get("model_id"), str):
        case.path_parameters["model_id"] = model
    return case

  return st.tuples(operation.as_strategy(generation_mode=mode), st.sampled_from(SERVED + (None,))).map(name)


@pytest.fixture(scope="module")
def live(served_runs, tmp_path_factory):
  """(TestClient with the models loaded, schemathesis schema, auth headers, server)."""
  from artjax.inference import Sampler
  from artjax.serve.app import Server, Settings, create_app
  from artjax.serve.content_filter import default_filter
  from artjax.serve.keys import KeyStore
  from artjax.serve.limits import RateLimiter

  root = tmp_path_factory.mktemp("serve_fuzz")
  with pytest.MonkeyPatch.context() as mp:  # orbax/TFDS temp dirs stay inside pytest's tmp
    (root / "_tmp").mkdir()
    mp.setenv("TMPDIR", str(root / "_tmp"))
    runs = served_runs
    store = KeyStore(root / "keys.json")
    key = store.add("fuzz")

    def loader():
      return {"txt": Sampler.from_workdir(runs["text"], name="txt", max_batch=8),
              "poem": Sampler.from_workdir(runs["poetry"], name="poem", max_batch=8),
              "img": Sampler.from_workdir(runs["image"], name="img", max_batch=8),
              "mus": Sampler.from_workdir(runs["music"], name="mus", max_batch=8)}

    server = Server(loader, Settings(max_batch=8, max_n=4, max_tokens=64, max_steps=10, max_frames=64,
                                     warmup_sizes=(1,)), keystore=store,
                    content_filter=default_filter(), rate_limiter=RateLimiter(None, None))
    app = create_app(server)
    with TestClient(app, raise_server_exceptions=False) as client:
      deadline = time.monotonic() + 300
      while client.get("/readyz").status_code != 200:
        assert server.load_error is None, server.load_error
        assert time.monotonic() < deadline, "models did not load within 300 s"
        time.sleep(0.2)
      headers = {"Authorization": f"Bearer {key}"}
      document = client.get("/openapi.json", headers=headers)  # not a public path: it needs the key
      assert document.status_code == 200, document.text
      yield client, schemathesis.openapi.from_dict(document.json()), headers, server


def _send(client, case, headers):
  """The case sent through the TestClient (schemathesis serializes it as for `requests`)."""
  kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
  body = {}
  if "json" in kw:
    body["content"] = json.dumps(kw["json"]).encode()
  elif kw.get("data") is not None:
    data = kw["data"]
    body["content"] = data if isinstance(data, (bytes, str)) else None
    if body["content"] is None:
      body = {"data": data}
  assert not kw.get("cookies"), kw  # the API documents none
  return client.request(kw["method"], kw["url"], headers=kw.get("headers"), params=kw.get("params"), **body)


def _problem(response) -> str | None:
  """Why this answer is wrong, or None."""
  if response.status_code >= 500:
    return f"{response.status_code} answer"
  if response.status_code >= 400:
    try:
      body = response.json()
    except ValueError:
      return f"{response.status_code} with a non-JSON body"
    err = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(err, dict)
            and set(err) == {"message", "type", "param", "code"} and isinstance(err["message"], str)
            and err["message"] and isinstance(err["type"], str)):
      return f"{response.status_code} body is not an OpenAI error object"
  return None


def test_schema_lists_every_operation(live):
  _, schema, _, _ = live
  found = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
  assert found == set(OPERATIONS)


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(live, method, path):
  client, schema, headers, server = live
  operation = schema[path][method]
  seen, problems, statuses, codes = [], [], collections.Counter(), collections.Counter()

  for mode, count in EXAMPLES.items():
    @hypothesis.settings(max_examples=count, deadline=None, database=None, derandomize=SCALE == 1,
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(case=_steered(operation, mode))
    def check(case):
      response = _send(client, case, headers)
      seen.append(1)
      statuses[response.status_code] += 1
      why = _problem(response)
      if not why and response.status_code >= 400:
        codes[str(response.json()["error"]["code"])] += 1
      if why:
        problems.append(f"{mode.value}: {why}\n  request: {case.as_curl_command(headers=headers)}\n"
                        f"  response: {response.text[:500]}")

    try:
      check()
    except hypothesis.errors.Unsatisfiable:
      assert mode == GenerationMode.NEGATIVE  # nothing to break: an operation without parameters or body

  print(f"{method} {path}: {len(seen)} cases, statuses {dict(sorted(statuses.items()))}, "
        f"error codes {dict(codes.most_common())}")
  assert not problems, f"{len(problems)} bad answers of {len(seen)}:\n" + "\n".join(problems)
  assert seen and server.ready


# Found by fuzzing: integers past what the sampler's arrays hold used to reach numpy/jax conversions and
# answer 500 (OverflowError in jax.random.key, in the int32 per-row top_k array). Now client errors.
OUT_OF_RANGE = [
    ("/v1/images/generations", {"model": "img", "seed": 2**63}, "seed"),
    ("/v1/completions", {"model": "txt", "prompt": "ab", "max_tokens": 2, "seed": -2**63 - 1}, "seed"),
    ("/v1/completions", {"model": "txt", "prompt": ["ab", "ba"], "max_tokens": 2, "seed": 2**63 - 1}, "seed"),
    ("/v1/completions", {"model": "txt", "prompt": "ab", "max_tokens": 2, "top_k": 2**31}, "top_k"),
]


@pytest.mark.parametrize("path,body,param", OUT_OF_RANGE, ids=[f"{p} {b[q]}" for p, b, q in OUT_OF_RANGE])
def test_out_of_range_integers_are_client_errors(live, path, body, param):
  client, _, headers, _ = live
  response = client.post(path, json=body, headers=headers)
  assert response.status_code == 400 and _problem(response) is None, response.text
  assert response.json()["error"]["param"] == param
