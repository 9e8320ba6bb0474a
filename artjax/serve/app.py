"""The HTTP API: OpenAI-compatible completions and image generations over artjax Samplers.

Routes: GET /v1/models, GET /v1/models/{id}, POST /v1/completions (language models),
POST /v1/images/generations (image models), GET /healthz, /readyz, /metrics (Prometheus), / (the
playground). The server knows nothing of families: it sees Samplers (output kind, typed options,
`check`, `run`) and encoders. Errors are OpenAI error objects {"error": {message, type, param, code}};
no stack trace reaches a client. Prompts and outputs are never logged or stored.
"""

import asyncio
import base64
import concurrent.futures
import dataclasses
import json
import logging
import math
import re
import secrets
import time
import uuid
from typing import Any, Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from artjax import encoders
from artjax.errors import ArtjaxError
from artjax.inference import Request as SampleRequest
from artjax.options import OptionError
from artjax.serve import metrics as metrics_mod
from artjax.serve.batching import ModelQueue

log = logging.getLogger("artjax.serve")

PUBLIC_PATHS = ("/healthz", "/readyz", "/", "/favicon.ico")  # the playground page asks for the key itself


@dataclasses.dataclass
class Settings:
  """Limits and behaviour of one server (all from `python -m artjax.serve` flags)."""

  max_batch: int = 32               # samples per coalesced compiled call
  max_wait_ms: float = 20.0         # longest wait for batch partners (adaptive below it; queued requests join)
  max_concurrency: int = 64         # requests in flight at once; past it: 503 with Retry-After
  max_body_bytes: int = 64 * 1024
  max_n: int = 16
  max_tokens: int = 1024
  max_prompt_chars: int = 4000
  max_steps: int = 1000             # sampler steps (diffusion), Gibbs iterations (Coconet)
  max_frames: int = 1024            # music steps per sample
  max_audio_seconds: float = 300.0  # music: length of each sample (WAVs are ~2.6 MB per minute)
  default_max_tokens: int = 16      # as OpenAI's completions
  warmup_sizes: tuple | None = None  # batch sizes compiled before ready (None: powers of two to max_batch)
  cors_origins: tuple = ()


class ApiError(Exception):
  """An error answered as an OpenAI error object."""

  def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param=None, code=None,
               headers=None):
    super().__init__(message)
    self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
    self.headers = headers or {}


def error_body(status, message, type_="invalid_request_error", param=None, code=None) -> dict:
  return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --- request schemas ------------------------------------------------------------------------------

_PY_TYPES = {"int": Optional[int], "float": Optional[float], "str": Optional[str], "bool": Optional[bool],
             "strings": Optional[Union[str, list[str]]], "bytes": Optional[str]}


def _extension_fields(options: dict, skip: set) -> dict:
  """pydantic fields for the families' typed options (the schema is generated from the declarations)."""
  fields = {}
  for name, o in options.items():
    if name in skip:
      continue
    fields[name] = (_PY_TYPES[o.kind], Field(None, description=o.help + " (artjax extension)"))
  return fields


class _Strict(BaseModel):
  model_config = ConfigDict(extra="forbid")


def build_schemas(declared: dict):
  """(CompletionRequest, ImageRequest) models: OpenAI's fields plus the families' options as extensions."""
  completion_base = dict(
      model=(str, Field(..., description="Model id (see /v1/models).")),
      prompt=(Union[str, list[str]], Field("", description="Prompt, or a list of prompts (n choices each).")),
      max_tokens=(Optional[int], Field(None, description="Tokens per choice (default 16, as OpenAI's).")),
      temperature=(Optional[float], Field(None, description="0..2 typical; 0 is greedy.")),
      top_p=(Optional[float], None), n=(Optional[int], Field(None, description="Choices per prompt (default 1).")),
      stop=(Optional[Union[str, list[str]]], Field(None, description="Up to 4 stop sequences; not in the output.")),
      seed=(Optional[int], Field(None, ge=0, le=2 ** 32 - 1, description="Same seed and request give the same output.")),
      stream=(Optional[bool], False), echo=(Optional[bool], False),
      logprobs=(Optional[int], None), user=(Optional[str], None), suffix=(Optional[str], None),
      best_of=(Optional[int], None), presence_penalty=(Optional[float], None),
      frequency_penalty=(Optional[float], None), logit_bias=(Optional[dict[str, float]], None),
      stream_options=(Optional[dict[str, Any]], None),
  )
  text_skip = {"prompt", "max_tokens", "temperature", "top_p", "stop", "label", "sampler", "steps", "eta",
               "guidance"}
  completion = create_model("CompletionRequest", __base__=_Strict, **completion_base,
                            **_extension_fields(declared, text_skip))
  image_base = dict(
      model=(Optional[str], Field(None, description="Model id (default: the first image model).")),
      prompt=(Optional[str], Field(None, description="A class name for class-conditional models (e.g. "
                                                     "'sneaker', '7'); ignored by unconditional ones.")),
      n=(Optional[int], Field(None, description="Images (default 1).")),
      size=(Optional[str], Field(None, description="WxH; must be the model's size.")),
      response_format=(Optional[Literal["b64_json", "url"]], Field(None, description="Only b64_json.")),
      quality=(Optional[str], None), style=(Optional[str], None), user=(Optional[str], None),
      seed=(Optional[int], Field(None, ge=0, le=2 ** 32 - 1, description="Same seed and request give the same output.")),
  )
  image_fields = {"label", "sampler", "steps", "eta", "guidance"}
  image = create_model("ImageRequest", __base__=_Strict, **image_base,
                       **_extension_fields({k: v for k, v in declared.items() if k in image_fields}, set()))
  return completion, image


# --- the app --------------------------------------------------------------------------------------

class Server:
  """State of one server: models, their queues, limits, keys, filter, metrics."""

  def __init__(self, loader, settings: Settings, keystore=None, content_filter=None, rate_limiter=None,
               request_log=None, allow_no_keys: bool = False):
    """`loader()` -> {name: Sampler}; called in a background thread so /readyz can say 503 meanwhile."""
    self.loader, self.settings = loader, settings
    self.keystore, self.filter, self.limiter = keystore, content_filter, rate_limiter
    self.request_log = request_log  # a callable taking a dict (one JSON line), or None
    self.allow_no_keys = allow_no_keys
    self.models: dict = {}
    self.queues: dict = {}
    self.ready = False
    self.load_error = None
    self.inflight = 0
    self.metrics = metrics_mod.Metrics()
    self.device = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="artjax-device")

  async def start(self):
    loop = asyncio.get_running_loop()
    try:
      models = await loop.run_in_executor(self.device, self._load_and_warm)
    except Exception as e:  # noqa: BLE001  reported by /readyz, never raised to clients
      self.load_error = f"{type(e).__name__}: {e}"
      log.error("model loading failed: %s", self.load_error)
      return
    for name, sampler in models.items():
      q = ModelQueue(name, sampler, self.device, self.settings.max_batch, self.settings.max_wait_ms / 1e3,
                     self.metrics.observe)
      q.start()
      self.queues[name] = q
    self.models = models
    self.ready = True

  def _load_and_warm(self):
    models = self.loader()
    sizes = self.settings.warmup_sizes or tuple(
        1 << i for i in range(self.settings.max_batch.bit_length()) if 1 << i <= self.settings.max_batch)
    for name, sampler in models.items():
      seconds = sampler.warmup(sizes, **self._warm_options(sampler))
      log.info("model %s ready (warm-up %.1fs)", name, seconds)
    return models

  def _warm_options(self, sampler) -> dict:
    names = {o.name for o in sampler.options()}
    return {"max_tokens": self.settings.default_max_tokens} if "max_tokens" in names else {}

  async def stop(self):
    for q in self.queues.values():
      await q.stop()
    self.device.shutdown(wait=False, cancel_futures=True)

  # --- auth, limits -------------------------------------------------------------------------------

  def authenticate(self, request: Request) -> str:
    """The key's name ('anonymous' when running without keys); 401 otherwise."""
    if self.keystore is None:
      return "anonymous"
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
      raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'", "invalid_request_error",
                     code="missing_api_key")
    if scheme.lower() != "bearer" or not token.strip():
      raise ApiError(401, "malformed Authorization header: expected 'Bearer KEY'", code="invalid_api_key")
    self._reload_keys()
    name = self.keystore.verify(token.strip())
    if name is None:
      raise ApiError(401, "incorrect API key", code="invalid_api_key")
    return name

  def _reload_keys(self):
    """Picks up keys added or revoked with `keys add/revoke` while the server runs (one stat per request)."""
    import os

    try:
      mtime = os.stat(self.keystore.path).st_mtime_ns
    except OSError:
      return
    if mtime != getattr(self, "_keys_mtime", None):
      if getattr(self, "_keys_mtime", None) is not None:
        self.keystore.reload()
      self._keys_mtime = mtime

  def rate_limit(self, key_id: str, units: int, field: str):
    if self.limiter is None:
      return
    wait = self.limiter.acquire(key_id, units)
    if wait == math.inf:
      raise ApiError(400, f"{field}: this request asks for {units} samples/tokens, more than the per-minute "
                     f"limit of {self.limiter.units_per_minute:g} for a key", param=field,
                     code="limit_exceeded")
    if wait > 0:
      raise ApiError(429, f"rate limit reached for key {key_id!r}; retry in {math.ceil(wait)} s",
                     "rate_limit_error", code="rate_limit_exceeded",
                     headers={"Retry-After": str(max(1, math.ceil(wait)))})

  def model(self, name: Optional[str], kind: str):
    if not self.ready:
      raise ApiError(503, "models are still loading; retry shortly (see /readyz)", "server_error",
                     code="not_ready", headers={"Retry-After": "5"})
    if name is None:
      candidates = [n for n, s in self.models.items() if kind is None or s.output_kind == kind]
      if not candidates:
        raise ApiError(404, f"no {kind} model is served", param="model", code="model_not_found")
      name = candidates[0]
    sampler = self.models.get(name)
    if sampler is None:
      raise ApiError(404, f"the model {name!r} does not exist; served: {', '.join(self.models)}",
                     param="model", code="model_not_found")
    if kind is not None and sampler.output_kind != kind:
      raise ApiError(400, f"the model {name!r} makes {sampler.output_kind}, not {kind}; use the "
                     f"{endpoint_of(sampler.output_kind)} endpoint", param="model", code="wrong_endpoint")
    return name, sampler

  def check_prompt(self, text: str, field: str = "prompt"):
    if self.filter is not None and text:
      hit = self.filter(text)
      if hit:
        raise ApiError(400, f"the {field} was refused by the content filter", param=field, code="content_filter")

  def check_text(self, text, field: str):
    """Length limit and content filter for any text a caller sends (prompts, acrostics, stop strings)."""
    if isinstance(text, (list, tuple)):
      for t in text:
        self.check_text(t, field)
      return
    if not isinstance(text, str) or not text:
      return
    if len(text) > self.settings.max_prompt_chars:
      raise ApiError(400, f"{field}: {len(text)} characters exceed this server's limit of "
                     f"{self.settings.max_prompt_chars}", param=field, code="limit_exceeded")
    self.check_prompt(text, field)

  def checked(self, sampler, options: dict):
    """(checked options, effective options) for `sampler`; 400s name the field or limit."""
    try:
      opts = sampler.check(options)
      eff = sampler.resolve(opts)  # e.g. a prompt that does not fit a poem's form fails here, alone
    except OptionError as e:
      raise ApiError(400, str(e), param=e.param, code="invalid_value") from None
    except ArtjaxError as e:
      raise ApiError(400, str(e), code="invalid_value") from None
    for o in sampler.options():  # each family declares which setting bounds which option
      if o.limit:
        self.limit(eff.get(o.name), getattr(self.settings, o.limit), o.name)
    self.limit(eff.get("seconds"), self.settings.max_audio_seconds, "seconds")  # audio of any family
    return opts, eff

  @staticmethod
  def units(sampler, n: int, eff: dict) -> int:
    """What a request costs a key: n samples times the effective value of the family's `cost` option."""
    cost = [o.name for o in sampler.options() if o.cost]
    return n * int((eff.get(cost[0]) if cost else None) or 1)

  async def run(self, name: str, request):
    """Submits a sampling request to the model's queue; input errors found while sampling are 400s."""
    try:
      return await self.queues[name].submit(request)
    except OptionError as e:
      raise ApiError(400, str(e), param=e.param, code="invalid_value") from None
    except ArtjaxError as e:
      raise ApiError(400, str(e), code="invalid_value") from None

  def filtered_output(self, text: str) -> bool:
    return bool(self.filter is not None and text and self.filter(text))

  def limit(self, value, limit, field):
    if value is not None and value > limit:
      raise ApiError(400, f"{field}: {value} exceeds this server's limit of {limit}", param=field,
                     code="limit_exceeded")


class BodyTooLarge(Exception):
  pass


class BodyLimit:
  """ASGI middleware: a 413 as soon as more than `limit` body bytes have arrived, whatever the headers
  say (a declared Content-Length over the limit is refused before reading anything)."""

  def __init__(self, app, limit: int):
    self.app, self.limit = app, int(limit)

  async def __call__(self, scope, receive, send):
    if scope["type"] != "http":
      return await self.app(scope, receive, send)
    headers = dict(scope.get("headers") or [])
    try:
      declared = int(headers.get(b"content-length", b"0") or 0)
    except ValueError:
      declared = 0
    too_large = _error_response(ApiError(413, f"request body exceeds the limit of {self.limit} bytes",
                                         code="body_too_large"))
    if declared > self.limit:
      return await too_large(scope, receive, send)
    state = {"seen": 0, "exceeded": False, "started": False}

    async def limited_receive():
      message = await receive()
      if message["type"] == "http.request":
        state["seen"] += len(message.get("body", b""))
        if state["seen"] > self.limit:
          state["exceeded"] = True
          raise BodyTooLarge()
      return message

    async def guarded_send(message):
      if state["exceeded"]:
        return  # the app's own answer to the aborted body is replaced by the 413 below
      state["started"] = True
      await send(message)

    try:
      await self.app(scope, limited_receive, guarded_send)
    except BodyTooLarge:
      pass
    if state["exceeded"] and not state["started"]:
      await too_large(scope, receive, send)


_ENDPOINT = {"text": "/v1/completions", "image": "/v1/images/generations"}  # OpenAI's; /v1/samples: any kind


def endpoint_of(kind: str) -> str:
  """The endpoint for an output kind: OpenAI's, the kind's own route (its encoder's `route`), or /v1/samples."""
  return _ENDPOINT.get(kind) or getattr(encoders.encoder(kind), "route", None) or "/v1/samples"


class SamplesRequest(_Strict):
  """artjax's own endpoint, for every output kind (a new family's kind needs an encoder, no server edit)."""

  model: Optional[str] = Field(None, description="Model id (default: the first served model).")
  n: Optional[int] = Field(None, description="Samples (default 1).")
  seed: Optional[int] = Field(None, ge=0, le=2 ** 32 - 1, description="Sample i is drawn from fold_in(key(seed), i).")
  options: dict[str, Any] = Field(default_factory=dict, description="The model's typed sampling options "
                                                                    "(see /v1/models); files as base64.")
  response_formats: Optional[list[str]] = Field(None, description="Formats of each sample (default: the kind's "
                                                "own, e.g. png, text, mid); several give `files` per sample.")


def create_app(server: Server) -> FastAPI:
  """The FastAPI app over `server` (models load in the background at startup)."""
  from contextlib import asynccontextmanager

  from artjax.sampling import declared_options

  completion_schema, image_schema = build_schemas({**declared_options("image"), **declared_options("text")})

  @asynccontextmanager
  async def lifespan(app):
    task = asyncio.get_running_loop().create_task(server.start())
    yield
    task.cancel()
    await server.stop()

  app = FastAPI(title="artjax", version=_version(), lifespan=lifespan,
                description="OpenAI-compatible API over artjax checkpoints (completions, image generations).")
  app.state.server = server

  # Innermost: the body limit, counted on the bytes that arrive (a Content-Length can lie).
  app.add_middleware(BodyLimit, limit=server.settings.max_body_bytes)

  @app.middleware("http")
  async def envelope(request: Request, call_next):
    rid = request.headers.get("x-request-id") or f"req-{uuid.uuid4().hex[:16]}"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", rid):
      rid = f"req-{uuid.uuid4().hex[:16]}"
    request.state.request_id = rid
    request.state.key_id = None
    request.state.model = None
    request.state.units = 0
    t = time.perf_counter()
    try:
      length = int(request.headers.get("content-length") or 0)
    except ValueError:
      length = 0
    try:
      if request.url.path not in PUBLIC_PATHS and request.method != "OPTIONS":  # CORS preflights carry no key
        request.state.key_id = server.authenticate(request)  # before the body is even parsed
    except ApiError as e:
      response = _error_response(e)
    else:
      response = None
    if response is not None:
      pass
    elif server.inflight >= server.settings.max_concurrency and request.url.path.startswith("/v1/"):
      response = _error_response(ApiError(503, "the server is at its concurrency limit; retry shortly",
                                           "server_error", code="overloaded", headers={"Retry-After": "1"}))
    else:
      server.inflight += 1
      try:
        response = await call_next(request)
      except Exception:  # noqa: BLE001  never a stack trace to the client
        log.exception("unhandled error in %s", request.url.path)
        response = _error_response(ApiError(500, "internal server error", "server_error"))
      finally:
        server.inflight -= 1
    response.headers["X-Request-Id"] = rid
    latency = time.perf_counter() - t
    endpoint = request.scope.get("route").path if request.scope.get("route") else "other"
    server.metrics.request(endpoint, request.state.model, response.status_code, latency)
    if server.request_log is not None:
      server.request_log({"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()), "request_id": rid,
                          "key_id": request.state.key_id, "method": request.method, "path": request.url.path,
                          "model": request.state.model, "request_bytes": length, "units": request.state.units,
                          "status": response.status_code, "latency_ms": round(latency * 1e3, 2)})
    return response

  if server.settings.cors_origins:  # added last: outermost, so its headers are on every answer (401s too)
    from fastapi.middleware.cors import CORSMiddleware

    app.add_middleware(CORSMiddleware, allow_origins=list(server.settings.cors_origins),
                       allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])

  @app.exception_handler(ApiError)
  async def api_error(request, exc: ApiError):
    return _error_response(exc)

  @app.exception_handler(RequestValidationError)
  async def validation_error(request, exc: RequestValidationError):
    errs = exc.errors()
    first = errs[0] if errs else {}
    loc = [str(x) for x in first.get("loc", ()) if x not in ("body",)]
    param = loc[0] if loc else None
    if first.get("type") == "extra_forbidden":
      names = sorted({str(e["loc"][-1]) for e in errs if e.get("type") == "extra_forbidden"})
      return _error_response(ApiError(400, f"unsupported parameter(s): {', '.join(names)}", param=names[0],
                                      code="unsupported_parameter"))
    if first.get("type") in ("json_invalid", "model_attributes_type", "dict_type") or not loc:
      return _error_response(ApiError(400, "the request body must be a JSON object", code="invalid_json"))
    return _error_response(ApiError(400, f"{'.'.join(loc)}: {first.get('msg', 'invalid value')}", param=param,
                                    code="invalid_value"))

  @app.exception_handler(StarletteHTTPException)
  async def http_error(request, exc: StarletteHTTPException):
    return _error_response(ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404
                                    else None))

  @app.exception_handler(Exception)
  async def any_error(request, exc: Exception):
    from starlette.requests import ClientDisconnect

    if isinstance(exc, (ClientDisconnect, BodyTooLarge)):  # answered by BodyLimit, or nobody is listening
      return _error_response(ApiError(413 if isinstance(exc, BodyTooLarge) else 400, "request body not received"))
    log.exception("unhandled error")
    return _error_response(ApiError(500, "internal server error", "server_error"))

  def auth(request: Request) -> str:
    return request.state.key_id  # checked by the middleware for every non-public path

  # --- routes -------------------------------------------------------------------------------------

  @app.get("/healthz", include_in_schema=False)
  async def healthz():
    return {"status": "ok"}

  @app.get("/readyz", include_in_schema=False)
  async def readyz():
    if server.ready:
      return {"status": "ready"}
    message = "model loading failed (see the server log)" if server.load_error else "models are loading"
    return _error_response(ApiError(503, message, "server_error", code="not_ready"))

  @app.get("/metrics", include_in_schema=False)
  async def prometheus(request: Request):
    auth(request)
    for name, q in server.queues.items():
      server.metrics.observe(model=name, queue_depth=q.depth)
    body, media_type = server.metrics.render()
    return Response(body, media_type=media_type)

  @app.get("/favicon.ico", include_in_schema=False)
  async def favicon():
    return Response(status_code=204)

  @app.get("/", include_in_schema=False)
  async def playground():
    from importlib import resources

    try:
      page = resources.files("artjax.serve").joinpath("static/playground.html").read_text("utf-8")
    except FileNotFoundError:
      page = "<!doctype html><title>artjax</title><p>artjax server: see /docs for the API.</p>"
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})

  @app.get("/v1/models")
  async def list_models(request: Request):
    auth(request)
    if not server.ready:
      server.model(None, "text")  # raises the 503
    return {"object": "list", "data": [_model_card(n, s, server.settings) for n, s in server.models.items()]}

  @app.get("/v1/models/{model_id:path}")
  async def get_model(model_id: str, request: Request):
    auth(request)
    if not server.ready:
      server.model(None, "text")
    if model_id not in server.models:
      raise ApiError(404, f"the model {model_id!r} does not exist", param="model", code="model_not_found")
    return _model_card(model_id, server.models[model_id], server.settings)

  @app.post("/v1/completions")
  async def completions(body: completion_schema, request: Request):  # type: ignore[valid-type]
    key_id = auth(request)
    req = body.model_dump(exclude_unset=True)
    name, sampler = server.model(req.pop("model"), "text")
    request.state.model = name
    for field in ("suffix", "logit_bias"):
      if req.get(field):
        raise ApiError(400, f"{field} is not supported by artjax models", param=field, code="unsupported_parameter")
    if req.get("logprobs") is not None:
      raise ApiError(400, "logprobs is not supported by artjax models (yet)", param="logprobs",
                     code="unsupported_parameter")
    if (req.get("best_of") or 1) != 1:
      raise ApiError(400, "best_of is not supported (only 1)", param="best_of", code="unsupported_parameter")
    for field in ("presence_penalty", "frequency_penalty"):
      if req.get(field):
        raise ApiError(400, f"{field} is not supported (only 0)", param=field, code="unsupported_parameter")
    prompts = req.pop("prompt", "")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
      raise ApiError(400, "prompt: an empty list", param="prompt")
    n = _n(req)
    server.limit(n * len(prompts), server.settings.max_n, "n")
    stream, echo = bool(req.pop("stream", False)), bool(req.pop("echo", False))
    stream_options = req.get("stream_options") or {}
    unknown = sorted(set(stream_options) - {"include_usage"})
    if unknown or (stream_options and not stream):
      raise ApiError(400, f"stream_options: only include_usage, with stream=true (got {sorted(stream_options)})",
                     param="stream_options", code="unsupported_parameter")
    seed = req.pop("seed", None)
    seed = secrets.randbits(31) if seed is None else seed
    for field in ("user", "stream_options", "best_of", "logprobs", "presence_penalty", "frequency_penalty",
                  "suffix", "logit_bias"):
      req.pop(field, None)
    options = {k: v for k, v in req.items() if v is not None}
    names = {o.name for o in sampler.options()}
    if "max_tokens" in names and "max_tokens" not in options and not options.get("form") \
        and not options.get("acrostic"):
      options["max_tokens"] = server.settings.default_max_tokens
    for p in prompts:
      server.check_text(p, "prompt")
    for field, value in options.items():
      server.check_text(value, field)  # acrostic, stop strings...
    checked, units = [], 0
    for p in prompts:
      opts, eff = server.checked(sampler, {**options, **({"prompt": p} if "prompt" in names else {})})
      checked.append(opts)
      units += server.units(sampler, n, eff)
    request.state.units = units
    server.rate_limit(key_id, units, "max_tokens")
    # One seed for the whole request: choice i * n + j is drawn from fold_in(key(seed), i * n + j).
    results = await asyncio.gather(*[server.run(name, SampleRequest(n, seed, opts, offset=i * n))
                                     for i, opts in enumerate(checked)])
    choices, usage = [], {"prompt_tokens": 0, "completion_tokens": 0}
    for i, (p, samples) in enumerate(zip(prompts, results)):
      usage["prompt_tokens"] += max((getattr(c, "prompt_tokens", 0) for c in samples.items), default=0)
      for j, c in enumerate(samples.items):
        body_text = c.continuation
        prompt_out = str(c)[:len(str(c)) - len(body_text)]  # the prompt as output (e.g. in the asked script)
        reason = c.finish_reason
        if server.filtered_output(body_text):
          body_text, reason = "", "content_filter"
        usage["completion_tokens"] += c.completion_tokens
        choices.append({"text": (prompt_out + body_text) if echo else body_text, "index": i * n + j,
                        "logprobs": None, "finish_reason": reason})
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    prov = encoders.provenance(results[0])
    prov.pop("workdir", None)  # server paths stay private
    if stream:
      usage_chunk = usage if stream_options.get("include_usage") else None
      return StreamingResponse(_stream(cid, created, name, choices, usage_chunk), media_type="text/event-stream",
                               headers={"Cache-Control": "no-cache"})
    return {"id": cid, "object": "text_completion", "created": created, "model": name, "choices": choices,
            "usage": usage, "system_fingerprint": f"artjax-{_version()}-step{sampler.step}",
            "artjax": {**prov, "seed": seed}}

  @app.post("/v1/images/generations")
  async def images(body: image_schema, request: Request):  # type: ignore[valid-type]
    key_id = auth(request)
    req = body.model_dump(exclude_unset=True)
    name, sampler = server.model(req.pop("model", None), "image")
    request.state.model = name
    if req.get("response_format") == "url":
      raise ApiError(400, "response_format 'url' is not supported: artjax stores no images; use 'b64_json'",
                     param="response_format", code="unsupported_parameter")
    info = sampler.describe()
    h, w = info.get("image_size", [0, 0])
    size = req.pop("size", None)
    if size is not None and size != f"{w}x{h}":
      raise ApiError(400, f"size: this model makes {w}x{h} images only, got {size!r}", param="size",
                     code="invalid_value")
    for field in ("quality", "style"):
      if req.get(field) not in (None, "standard", "auto", "natural", "vivid"):
        raise ApiError(400, f"{field}: unsupported value {req.get(field)!r}", param=field)
    n = _n(req)
    server.limit(n, server.settings.max_n, "n")
    prompt = req.pop("prompt", None) or ""
    server.check_text(prompt, "prompt")
    seed = req.pop("seed", None)
    seed = secrets.randbits(31) if seed is None else seed
    for field in ("response_format", "quality", "style", "user"):
      req.pop(field, None)
    options = {k: v for k, v in req.items() if v is not None}
    classes = info.get("classes") or []
    if prompt and classes:
      label = _class_of(prompt, classes)
      if options.get("label", label) != label:
        raise ApiError(400, f"prompt names class {label} ({classes[label]!r}) but label is {options['label']}; "
                       f"give one of them", param="label", code="invalid_value")
      options["label"] = label
    options, _ = server.checked(sampler, options)
    request.state.units = n
    server.rate_limit(key_id, n, "n")
    samples = await server.run(name, SampleRequest(n, seed, options))
    samples.provenance.pop("workdir", None)  # server paths stay private
    def encode():  # PNG and base64 off the event loop and off the device thread, in one hop
      return [{"b64_json": base64.b64encode(p.data).decode("ascii"), "revised_prompt": None}
              for p in encoders.encode(samples, "png")]

    data = await asyncio.to_thread(encode)
    return {"created": int(time.time()), "data": data, "artjax": {**encoders.provenance(samples), "seed": seed}}

  def samples_route(kind: Optional[str]):
    async def samples_endpoint(body: SamplesRequest, request: Request):
      req = body.model_dump(exclude_unset=True)
      name, sampler = server.model(req.pop("model", None), kind)
      request.state.model = name
      n = _n(req)
      server.limit(n, server.settings.max_n, "n")
      enc = encoders.encoder(sampler.output_kind)
      formats = req.get("response_formats") or [enc.item_format]
      bad = [f for f in formats if f not in enc.formats]
      if bad or len(set(formats)) != len(formats):
        raise ApiError(400, f"response_formats: {sampler.output_kind} samples come as "
                       f"{', '.join(enc.formats)}; got {', '.join(map(str, bad or formats))}",
                       param="response_formats", code="invalid_value")
      options = dict(req.get("options") or {})
      declared = {o.name: o for o in sampler.options()}
      for field, value in options.items():  # every text a caller sends passes the limits and the filter
        if field not in declared or declared[field].kind in ("str", "strings"):
          server.check_text(value, field)
      options, eff = server.checked(sampler, options)
      seed = req.get("seed")
      seed = secrets.randbits(31) if seed is None else seed
      request.state.units = server.units(sampler, n, eff)
      server.rate_limit(request.state.key_id, request.state.units, "n")
      samples = await server.run(name, SampleRequest(n, seed, options))
      samples.provenance.pop("workdir", None)
      encoded = await asyncio.to_thread(lambda: [encoders.encode_each(samples, f) for f in formats])
      data = []
      for i in range(len(samples)):
        item = encoded[0][i]
        entry = {"index": i, "media_type": item.media_type,
                 "finish_reason": getattr(samples.items[i], "finish_reason", None)}
        # The generated text itself is checked, whatever format carries it (a .json holds it too).
        if isinstance(samples.items[i], str) and server.filtered_output(str(samples.items[i])):
          entry.update(text="", finish_reason="content_filter")
          data.append(entry)
          continue
        if item.media_type.startswith("text/"):
          entry["text"] = item.data.decode("utf-8")
        else:
          entry["b64"] = base64.b64encode(item.data).decode("ascii")
        if len(formats) > 1:
          entry["files"] = {f: {"media_type": e[i].media_type, "b64": base64.b64encode(e[i].data).decode("ascii")}
                            for f, e in zip(formats, encoded)}
        data.append(entry)
      return {"object": "list", "model": name, "created": int(time.time()), "data": data,
              "artjax": {**encoders.provenance(samples), "seed": seed}}

    return samples_endpoint

  app.post("/v1/samples")(samples_route(None))
  # A kind's own route (music: /v1/audio/music) is declared by its encoder, so the server needs no edit.
  for kind in encoders.ENCODERS.names():
    route = getattr(encoders.encoder(kind), "route", None)
    if route:
      app.post(route, name=f"{kind} samples")(samples_route(kind))

  return app


def _n(req) -> int:
  n = req.pop("n", None)
  if n is None:
    return 1
  if n < 1:
    raise ApiError(400, f"n: must be >= 1, got {n}", param="n", code="invalid_value")
  return n


def _class_of(prompt: str, classes: list[str]) -> int:
  """The class a prompt names. Each class answers to its name, the parts of a name with '/'
  ('t-shirt/top': 't-shirt', 'top') and its last word ('ankle boot': 'boot'), singular or plural, as a
  whole word ('shirt' is not found in 't-shirt'). An ApiError lists the classes unless exactly one
  class is named."""
  p = prompt.strip().casefold()
  found = {}  # class -> length of the alias found
  for c, name in enumerate(classes):
    name = name.casefold()
    aliases = {name, *name.split("/"), name.split()[-1] if " " in name else name}
    for alias in aliases:
      alias = alias.strip()
      if alias and re.search(rf"(?<![\w-]){re.escape(alias)}(?:s|es)?(?![\w-])", p):
        found[c] = max(found.get(c, 0), len(alias))
  if len(found) == 1:
    return next(iter(found))
  raise ApiError(400, f"prompt: name one of this model's classes ({', '.join(classes)}); got {prompt!r}",
                 param="prompt", code="invalid_value")


def _model_card(name, sampler, settings) -> dict:
  limits = {"max_n": settings.max_n, "max_prompt_chars": settings.max_prompt_chars}
  for o in sampler.options():
    if o.limit:
      limits[o.limit] = getattr(settings, o.limit)
  enc = encoders.encoder(sampler.output_kind)
  if any(t.startswith("audio/") for t in enc.formats.values()):
    limits["max_audio_seconds"] = settings.max_audio_seconds
  return {"id": name, "object": "model", "created": int(_created(sampler)), "owned_by": "artjax",
          "artjax": {**sampler.describe(), "limits": limits, "formats": dict(enc.formats),
                     "endpoint": endpoint_of(sampler.output_kind)}}


def _created(sampler) -> float:
  import pathlib

  try:
    return (pathlib.Path(sampler.workdir) / "checkpoints" / str(sampler.step)).stat().st_mtime
  except (OSError, TypeError):
    return time.time()


async def _stream(cid, created, model, choices, usage=None):
  """Server-sent events as OpenAI's: text deltas per choice, then a finish chunk each, then [DONE].

  The choices are complete (the decode loop is compiled end to end) and already cut at their stop
  sequences, so no part of a stop string is ever sent.
  """
  def event(obj):
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

  for c in choices:
    text = c["text"]
    for s in range(0, len(text), 8):
      yield event({"id": cid, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"text": text[s:s + 8], "index": c["index"], "logprobs": None,
                                "finish_reason": None}]})
      await asyncio.sleep(0)
    yield event({"id": cid, "object": "text_completion", "created": created, "model": model,
                 "choices": [{"text": "", "index": c["index"], "logprobs": None, "finish_reason": c["finish_reason"]}]})
  if usage is not None:  # stream_options.include_usage: a last chunk with no choices, as OpenAI's
    yield event({"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [],
                 "usage": usage})
  yield "data: [DONE]\n\n"


def _error_response(err: ApiError) -> JSONResponse:
  return JSONResponse(error_body(err.status, err.message, err.type, err.param, err.code), status_code=err.status,
                      headers=err.headers)


def _version() -> str:
  import artjax

  return artjax.__version__

