"""The family contract (issue 12 §0), for every config under configs/ and every registered method.

Each config's `:smoke` variant, on a tiny stand-in dataset made here (so every parameter runs without
../shared), must: build a Trainer, init, train its few steps and checkpoint (in this process); restore
in a *new* process (one subprocess for all configs: tests/workers/restore_and_sample.py) with the
trained weights bit for bit; sample through the inference seam (`Sampler.from_workdir(...).sample(2,
seed=0)`, the same bytes again for the same seed); and encode in every format of its output kind
(`encoders.encode` and `encoders.encode_each`): non-empty bytes of the format's media type that parse
(PNG: PIL, MIDI: pretty_midi, WAV: wave, JSON: json, npy: np.load), with the provenance of the
checkpoint in PNG and JSON. A method that does not sample (the classifier, configs/eval) trains,
checkpoints and restores the same way, and `sample` refuses with an ArtjaxError instead of crashing.

Per registered method (its first config, preferring one that needs no TFDS): 2N steps in one run give
the same train state, bit for bit, as N steps + a new Trainer resuming to 2N (the N-step run is the
straight run's own step-N checkpoint, saved in the loop, copied to a fresh workdir). And every method in
`artjax.methods.METHODS` has a config: registering a family puts it under this contract.

Cost: one XLA compile of init and of the train step per config dominates, so the runs compile with
jax_disable_most_optimizations (~3x faster; restored afterwards) and the subprocess restores and samples
each run while the next one trains. `-k` trains only the configs the selected tests need.
"""

import contextlib
import gzip
import importlib.util
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, smoke_config

NUM, SEED = 2, 0  # Sampler.sample(NUM, seed=SEED)
MAX_SMOKE_STEPS = 16

CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("configs/*/*.py") if not p.name.startswith("_"))


def _load_meta():
  meta = {}
  for path in CONFIGS:
    c = smoke_config(f"{path}:smoke")
    meta[path] = {"method": c.method.name, "data": c.data.name}
  return meta


META = _load_meta()
# Configs whose data is TFDS (cifar10, celeb_a): trained on tfds.testing.mock_data, so they need
# tensorflow_datasets; not used for the resume check when another config of the method exists.
TFDS_SOURCES = ("tfds", "tfds_text")


def _resume_configs() -> dict:
  """Method name -> the config its resume check uses: the first by path, preferring non-TFDS data."""
  chosen = {}
  for path in sorted(CONFIGS, key=lambda p: (META[p]["data"] in TFDS_SOURCES, p)):
    chosen.setdefault(META[path]["method"], path)
  return dict(sorted(chosen.items()))


RESUME = _resume_configs()

# Known contract failures: config -> reason (xfail, strict: fixing the bug makes the test say so).
XFAIL = {}


def _params(paths, xfail):
  return [pytest.param(p, id=p.removeprefix("configs/").removesuffix(".py"),
                       marks=[pytest.mark.xfail(strict=True, reason=xfail[p])] if p in xfail else [])
          for p in paths]


WORKER = ROOT / "tests" / "workers" / "restore_and_sample.py"


def _worker():
  spec = importlib.util.spec_from_file_location("restore_and_sample", WORKER)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


digest = _worker().digest


# --- tiny stand-in datasets ----------------------------------------------------------------------------


def _idx(path, array):
  header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def _mnist(root, rng):
  """The four IDX files of MNIST, 20 train and 10 test 28x28 images, labels 0..9."""
  root.mkdir()
  for stem, n in (("train", 20), ("t10k", 10)):
    _idx(root / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
    _idx(root / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)
  return root


def _image_folder(root, rng):
  """Six 20x20 RGBA emoji-like discs on a transparent background."""
  root.mkdir()
  yy, xx = np.mgrid[:20, :20]
  for i in range(6):
    img = np.zeros((20, 20, 4), np.uint8)
    img[(yy - 10) ** 2 + (xx - 10) ** 2 < 36 + 4 * i] = (200 + 5 * i, rng.integers(0, 80), 40, 255)
    Image.fromarray(img, "RGBA").save(root / f"e{i}.png")
  return root


def _text(path, rng):
  path.write_text("".join(rng.choice(list("abcdefgh ijklm\nROMEO:"), 4000)), encoding="utf-8")
  return path


HANZI = "春夏秋冬山水風月花鳥雲日天人不白黃河入海流欲窮千里目更上一層樓明前床光疑是地霜舉頭望低思故鄉"


def _poems(root, rng):
  """A chinese-poetry checkout with one 全唐诗 file of 40 five-character quatrains."""
  (root / "全唐诗").mkdir(parents=True)
  poems = []
  for _ in range(40):
    lines = ["".join(rng.choice(list(HANZI), 5)) for _ in range(4)]
    poems.append({"title": "t", "author": "a", "paragraphs": [f"{lines[0]}，{lines[1]}。", f"{lines[2]}，{lines[3]}。"]})
  (root / "全唐诗" / "poet.tang.0.json").write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
  return root


def _jsb(root, rng):
  """JSB_Chorales.mat (88-key rolls, quarter steps) and Jsb16thSeparated.json (SATB pitches, 16ths)."""
  import scipy.io

  root.mkdir()
  splits = {"train": 6, "valid": 2, "test": 2}
  mat = {}
  for split, n in splits.items():
    rolls = np.empty((1, n), object)
    for i in range(n):
      roll = np.zeros((20 + 2 * i, 88), np.float64)
      for t in range(len(roll)):
        roll[t, rng.choice(np.arange(20, 60), 4, replace=False)] = 1
      rolls[0, i] = roll
    mat[f"{split}data"] = rolls
  scipy.io.savemat(root / "JSB_Chorales.mat", mat)
  ranges = ((60, 81), (52, 74), (46, 69), (36, 66))  # soprano, alto, tenor, bass
  voices = {}
  for split, n in splits.items():
    voices[split] = []
    for i in range(n):
      steps = 32 + 4 * i
      piece = np.stack([rng.integers(lo + 3, hi - 3, steps) for lo, hi in ranges], 1)
      piece[rng.random(piece.shape) < 0.05] = -1  # a few rests
      voices[split].append(piece.tolist())
  (root / "Jsb16thSeparated.json").write_text(json.dumps(voices))
  return root


def make_stand_ins(root: pathlib.Path) -> dict:
  """data source name -> config.data overrides pointing at a tiny dataset under `root`."""
  rng = np.random.default_rng(0)
  root.mkdir(parents=True, exist_ok=True)
  mnist = str(_mnist(root / "mnist", rng))
  return {
      "digits": {},  # bundled with scikit-learn
      "mnist": {"data.dir": mnist},
      "fashion_mnist": {"data.dir": mnist},
      "image_folder": {"data.dir": str(_image_folder(root / "images", rng))},
      "text": {"data.path": str(_text(root / "corpus.txt", rng))},
      "chinese_poetry": {"data.dir": str(_poems(root / "poems", rng))},
      "jsb_chorales": {"data.dir": str(_jsb(root / "jsb", rng))},
      "tfds": {},  # tfds.testing.mock_data: see _data_context
  }


def _data_context(data_name):
  """Where a source reads a dataset that cannot be made here (TFDS), a context that provides it."""
  if data_name not in TFDS_SOURCES:
    return contextlib.nullcontext()
  tfds = pytest.importorskip("tensorflow_datasets")
  return tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE)


def contract_config(path, stand_ins):
  """The smoke config on its stand-in data, without the loop's own sample grids and evaluations. A
  RESUME config keeps all its checkpoints (the resume check starts from the one at step N)."""
  data_name = META[path]["data"]
  if data_name not in stand_ins:
    raise AssertionError(f"{path}: no stand-in data for data source {data_name!r}; add one to "
                         f"make_stand_ins in tests/test_family_contract.py")
  base = smoke_config(f"{path}:smoke")
  extra = {k: 0 for k in ("sample_every", "eval_every") if k in base}
  if path in RESUME.values() and "keep_checkpoints" in base:
    extra["keep_checkpoints"] = max(int(base.get("keep_checkpoints", 1)), int(base.total_steps))
  return smoke_config(f"{path}:smoke", **{**stand_ins[data_name], **extra})


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def generative(method) -> bool:
  return generative_class(type(method))


def generative_class(cls) -> bool:
  """Whether a method samples: it overrides `sample`, or both `prior` and `decode`."""
  from artjax.methods.base import Method

  return cls.sample is not Method.sample or (cls.prior is not Method.prior and cls.decode is not Method.decode)


def _slug(path):
  return path.removeprefix("configs/").removesuffix(".py").replace("/", "__")


# --- the runs: trained here, restored and sampled in one subprocess ----------------------------------------


def _selected(session, name, param):
  """The values of `param` in the selected items of test function `name` (e.g. under -k)."""
  return {item.callspec.params[param] for item in session.items
          if getattr(item, "originalname", None) == name and hasattr(item, "callspec")}


def _train(path, stand_ins, workdir) -> dict:
  """Trains the smoke config to its end (2-4 steps; saved at its checkpoint_every steps and the last)."""
  from artjax.train.loop import Trainer

  rec = {"workdir": str(workdir)}
  t = time.perf_counter()
  try:
    config = contract_config(path, stand_ins)
    if config.total_steps > MAX_SMOKE_STEPS:
      raise AssertionError(f"{path}:smoke trains {config.total_steps} steps: give the config a ':smoke' "
                           f"variant of at most {MAX_SMOKE_STEPS} steps of a tiny model")
    with _data_context(META[path]["data"]):
      trainer = Trainer(config, workdir)
      rec.update(kind=trainer.method.output_kind, generative=generative(trainer.method),
                 total_steps=int(config.total_steps))
      state = trainer.run(progress=False)
    rec.update(step=int(state.step), params_digest=digest(state.params), ema_digest=digest(state.ema_params))
    if path in RESUME.values():
      rec["state"] = host(state)
  except pytest.skip.Exception as e:
    rec["skip"] = str(e)
  except Exception:
    rec["error"] = traceback.format_exc()
  rec["seconds"] = time.perf_counter() - t
  return rec


def _resume(path, rec, stand_ins, workdir) -> dict:
  """N + restart + N: a new Trainer resumes from the straight run's step-N checkpoint (saved in the loop,
  while the run went on) to 2N. Returns {"n", "differ": state leaves unequal to the straight run's} or
  {"error"}."""
  from artjax.train.loop import Trainer

  out = {}
  t = time.perf_counter()
  try:
    total = rec["total_steps"]
    n = total // 2
    src = pathlib.Path(rec["workdir"]) / "checkpoints"
    if n < 1 or not (src / str(n)).is_dir():
      raise AssertionError(f"the smoke run ({total} steps, checkpoint_every) saved no step {n} to resume "
                           f"from; saved: {sorted(p.name for p in src.iterdir())}")
    shutil.copytree(src, workdir / "checkpoints",
                    ignore=lambda d, names: [x for x in names if d == str(src) and x.isdigit() and x != str(n)])
    config = contract_config(path, stand_ins)
    with _data_context(META[path]["data"]):
      resumed = host(Trainer(config, workdir).run(progress=False))
    straight = rec.pop("state")
    leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(straight)
    leaves_b, tree_b = jax.tree_util.tree_flatten_with_path(resumed)
    assert tree_a == tree_b, f"the resumed state's structure differs:\n{tree_a}\n{tree_b}"
    out.update(n=n, total=total, step=int(resumed.step),
               differ=[jax.tree_util.keystr(k) for (k, a), (_, b) in zip(leaves_a, leaves_b)
                       if not np.array_equal(a, b)])
  except Exception:
    out["error"] = traceback.format_exc()
  out["seconds"] = time.perf_counter() - t
  return out


class _Worker:
  """tests/workers/restore_and_sample.py in one process, fed jobs as runs finish (it restores and samples
  while the next config trains)."""

  def __init__(self, root, env):
    self.out = root / "restored"
    self.log = open(root / "worker.log", "w")
    self.t = time.perf_counter()
    self.proc = subprocess.Popen([sys.executable, str(WORKER), "-", str(self.out)], cwd=ROOT, env=env,
                                 stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, text=True)

  def submit(self, job):
    try:
      self.proc.stdin.write(json.dumps(job) + "\n")
      self.proc.stdin.flush()
    except (BrokenPipeError, OSError):
      pass  # it died: its log says why (reported for every job without a result)

  def results(self, timeout) -> dict:
    try:
      self.proc.stdin.close()
    except (BrokenPipeError, OSError):
      pass
    try:
      self.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      self.proc.wait()
    self.log.close()
    self.seconds = time.perf_counter() - self.t
    f = self.out / "results.json"
    return json.loads(f.read_text()) if f.is_file() else {}

  def kill(self):
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.wait()
    if not self.log.closed:
      self.log.close()

  def tail(self):
    text = (self.out.parent / "worker.log").read_text(errors="replace")
    return f"the worker left no result (exit {self.proc.returncode}); its log ends:\n{text[-3000:]}"


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
  """path -> record of its contract run: "error" or "skip", or the trained step and weight digests, plus
  "restored" (the subprocess's results) and, for RESUME configs, "resume". Only the configs the selected
  tests use are trained (-k works)."""
  root = tmp_path_factory.mktemp("family_contract")
  resume_methods = _selected(request.session, "test_resume_is_exact", "method")
  wanted = sorted(_selected(request.session, "test_family_contract", "path")
                  | _selected(request.session, "test_encode_each_gives_one_work_per_sample", "path")
                  | {RESUME[m] for m in resume_methods})
  records = {}
  tmp = root / "_tmp"
  tmp.mkdir()
  # XLA's optimisations cost more than these few tiny steps: compiling without them makes the file ~3x
  # faster. Both sides of each comparison are compiled alike, and the worker samples with them off too.
  flag = "jax_disable_most_optimizations"
  before = jax.config.read(flag)
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TMPDIR": str(tmp), "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
  worker = None
  with pytest.MonkeyPatch.context() as mp:  # TFDS and orbax temp files stay in this module's tmp dir
    mp.setenv("TMPDIR", str(tmp))
    mp.setattr(tempfile, "tempdir", str(tmp))
    jax.config.update(flag, True)
    try:
      t = time.perf_counter()
      worker = _Worker(root, env)
      stand_ins = make_stand_ins(root / "data")
      for path in wanted:
        rec = records[path] = _train(path, stand_ins, root / "runs" / _slug(path))
        if "step" in rec:
          worker.submit({"id": _slug(path), "workdir": rec["workdir"], "generative": rec["generative"],
                         "num": NUM, "seed": SEED})
          if path in RESUME.values() and META[path]["method"] in resume_methods:
            rec["resume"] = _resume(path, rec, stand_ins, root / "resumed" / _slug(path))
        rec.pop("state", None)
      train_sec = time.perf_counter() - t
      results = worker.results(timeout=300)
    finally:
      jax.config.update(flag, before)
      if worker is not None:
        worker.kill()  # no-op once it has finished; never left waiting on its stdin
  for path, rec in records.items():
    if "step" in rec:
      rec["restored"] = results.get(_slug(path)) or {"ok": False, "error": worker.tail()}
  print(f"\nfamily contract: {len(records)} configs trained in {train_sec:.0f}s; the worker finished "
        f"{worker.seconds:.0f}s after it started. Per config (train, resume, restore+sample+encode):\n" + "\n".join(
            f"  {p}: {r.get('seconds', 0):.1f}s, {r.get('resume', {}).get('seconds', 0):.1f}s, "
            f"{r.get('restored', {}).get('seconds', {}).get('total', 0):.1f}s" for p, r in records.items()))
  return {"records": records, "stand_ins": stand_ins, "root": root}


def _record(runs, path):
  rec = runs["records"][path]
  if "skip" in rec:
    pytest.skip(rec["skip"])
  assert "error" not in rec, f"{path}: training failed:\n{rec['error']}"
  return rec


# --- the tests --------------------------------------------------------------------------------------------


def test_every_registered_method_has_a_config():
  from artjax.methods import METHODS

  used = {m["method"] for m in META.values()}
  missing = [m for m in METHODS.names() if m not in used]
  assert not missing, (f"method(s) {missing} are registered in artjax.methods.METHODS but no config under "
                       f"configs/ uses them: add configs/<family>/<dataset>_<model>.py with a ':smoke' variant, "
                       f"so the family contract covers them")
  unknown = sorted({f"{p}: {m['method']}" for p, m in META.items() if m["method"] not in METHODS})
  assert not unknown, f"configs name unregistered methods: {unknown}"


def test_every_output_kind_has_an_encoder():
  from artjax import encoders
  from artjax.methods import METHODS

  missing = sorted({f"{m}: {METHODS.get(m).output_kind}" for m in METHODS.names()
                    if generative_class(METHODS.get(m)) and METHODS.get(m).output_kind not in encoders.ENCODERS})
  assert not missing, f"methods whose output kind has no encoder in artjax/encoders/: {missing}"
  for kind in encoders.ENCODERS.names():
    enc = encoders.ENCODERS.get(kind)
    assert enc.formats and enc.default in enc.formats and enc.item_format in enc.formats, kind


def test_every_config_has_stand_in_data(tmp_path):
  # A config on a new data source needs a stand-in in make_stand_ins (else its contract test fails).
  stand_ins = make_stand_ins(tmp_path / "data")
  missing = sorted({f"{p}: {m['data']}" for p, m in META.items() if m["data"] not in stand_ins})
  assert not missing, f"no stand-in data for {missing}: add one to make_stand_ins"


def _parse(media_type, data: bytes):
  """Parses one encoded item as its media type says; returns its provenance dict where the format holds
  one (PNG "artjax" text chunk, JSON fields, MIDI text event), else None."""
  import io

  base = media_type.split(";")[0].strip()
  if base == "image/png":
    with Image.open(io.BytesIO(data)) as im:
      im.load()
      assert im.format == "PNG" and im.width > 0 and im.height > 0
      return json.loads(im.text["artjax"])
  if base == "audio/midi":
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    assert pm.instruments, "a MIDI file without instruments"
    texts = [json.loads(t.text) for t in getattr(pm, "text_events", []) if t.text.startswith("{")]
    return texts[0] if texts else None
  if base in ("audio/wav", "audio/x-wav", "audio/wave"):
    import wave

    with wave.open(io.BytesIO(data)) as w:
      assert w.getnframes() > 0 and w.getframerate() > 0
    return None
  if base == "application/json":
    return json.loads(data.decode("utf-8"))
  if base == "application/x-npy":
    a = np.load(io.BytesIO(data), allow_pickle=False)
    assert a.size > 0
    return None
  if base.startswith("text/"):
    data.decode("utf-8")
    return None
  return None  # a media type this test cannot parse: non-empty bytes are all it checks


def _kind(path):
  from artjax.methods import METHODS

  return METHODS.get(META[path]["method"]).output_kind


@pytest.mark.parametrize("path", _params(CONFIGS, XFAIL))
def test_family_contract(path, runs):
  rec = _record(runs, path)
  assert rec["step"] == rec["total_steps"] > 0
  assert (pathlib.Path(rec["workdir"]) / "checkpoints" / str(rec["step"])).is_dir()
  res = rec["restored"]
  assert res["ok"], f"{path}: restore/sample in a new process failed:\n{res.get('error')}"
  # The new process restores the checkpoint the trainer saved, weights bit for bit.
  assert res["step"] == res["sampler_step"] == rec["step"]
  assert res["params_digest"] == rec["params_digest"], "restored params differ from the trained ones"
  assert res["ema_digest"] == rec["ema_digest"], "restored EMA params differ from the trained ones"
  assert res["kind"] == rec["kind"]
  if not rec["generative"]:
    assert res["refusal"] and "does not sample" in res["refusal"], (
        f"{path}: a method that does not sample must refuse with an ArtjaxError, got {res['refusal']!r}")
    return
  from artjax import encoders

  enc = encoders.ENCODERS.get(rec["kind"])
  assert res["num"] == NUM and res["samples_kind"] == rec["kind"]
  assert res["provenance"]["step"] == rec["step"] and res["provenance"]["seed"] == SEED
  assert res["repeatable"], "the same seed gave different samples"
  assert res["formats"] == dict(enc.formats) and enc.formats
  problems = []
  for fmt, media_type in enc.formats.items():
    for mode in ("encode", "encode_each"):
      got = res["encoded"][f"{mode}/{fmt}"]
      if "error" in got:
        problems.append(f"{mode}(samples, {fmt!r}) raised:\n{got['error']}")
        continue
      if not got["files"]:
        problems.append(f"{mode}(samples, {fmt!r}) gave no items")
      for i, item in enumerate(got["files"]):
        where = f"{mode}(samples, {fmt!r})[{i}]"
        data = pathlib.Path(item["file"]).read_bytes()
        if item["data_type"] != "bytes" or not data:
          problems.append(f"{where}: data is {item['data_type']} of {len(data)} bytes, not non-empty bytes")
          continue
        if item["media_type"] != media_type:
          problems.append(f"{where}: media type {item['media_type']!r}, the format declares {media_type!r}")
        try:
          meta = _parse(item["media_type"], data)
        except Exception as e:
          problems.append(f"{where} ({item['media_type']}) does not parse: {type(e).__name__}: {e}")
          continue
        if meta is not None and not (meta.get("step") == rec["step"] and meta.get("seed") == SEED
                                     and meta.get("index", i) == i):
          problems.append(f"{where}: provenance {meta} is not step {rec['step']}, seed {SEED}, index {i}")
  assert not problems, f"{path}:\n" + "\n".join(problems)


def _first_config_per_kind() -> dict:
  kinds = {}
  for path in sorted(CONFIGS, key=lambda p: (META[p]["data"] in TFDS_SOURCES, p)):
    if _generative_class(path):
      kinds.setdefault(_kind(path), path)
  return kinds


def _generative_class(path):
  from artjax.methods import METHODS

  return generative_class(METHODS.get(META[path]["method"]))


def _each_params():
  from artjax import encoders

  xfail = XFAIL_EACH
  out = []
  for kind, path in sorted(_first_config_per_kind().items()):
    for fmt in encoders.ENCODERS.get(kind).formats:
      marks = [pytest.mark.xfail(strict=True, reason=xfail[(kind, fmt)])] if (kind, fmt) in xfail else []
      out.append(pytest.param(kind, fmt, path, id=f"{kind}-{fmt}", marks=marks))
  return out


# Known failures of the one-work-per-sample contract: (kind, format) -> reason.
XFAIL_EACH = {}


@pytest.mark.parametrize("kind,fmt,path", _each_params())
def test_encode_each_gives_one_work_per_sample(kind, fmt, path, runs):
  """encode_each is "one encoded work per sample, in fmt" (artjax/encoders/__init__.py), and the server's
  /v1/samples takes every format of the kind as a response_format and reads encode_each's item i for
  sample i: every format must give len(samples) items."""
  rec = _record(runs, path)
  res = rec["restored"]
  assert res["ok"], f"{path}: restore/sample in a new process failed:\n{res.get('error')}"
  got = res["encoded"][f"encode_each/{fmt}"]
  assert "error" not in got, got["error"]
  assert len(got["files"]) == res["num"] == NUM, (
      f"encode_each(samples, {fmt!r}) of {NUM} {kind} samples gave {len(got['files'])} item(s)")


@pytest.mark.parametrize("method", sorted(RESUME))
def test_resume_is_exact(method, runs):
  """2N steps in one run == N steps + a new Trainer resuming to 2N, bit for bit: params, optimizer state,
  EMA, model state (BatchNorm statistics), RNG and step."""
  path = RESUME[method]
  rec = _record(runs, path)
  res = rec.get("resume")
  assert res is not None and "error" not in res, f"{path}: resuming failed:\n{(res or {}).get('error')}"
  assert res["step"] == res["total"]
  assert not res["differ"], (f"{path}: after {res['n']} steps + restart + {res['total'] - res['n']} steps, "
                             f"these differ from {res['total']} steps in one run: {res['differ']}")
