"""Language models: causal masking, KV cache == full forward, the decode loop's sampling controls, poem forms, CLI."""

import json

from flax.core import meta
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from artjax import methods
from artjax.methods import poetry
from artjax.eval.split import evaluate_split
from artjax.methods.decoding import filter_logits
from artjax.models.lstm import LSTMLM
from artjax.models.transformer import Transformer
from artjax.train.loop import train
from conftest import run_cli

ENGLISH = "abcdefghijklmnopqrstuvwxyz ,.:\nABCDE"
HANZI = "春夏秋冬山水風月花鳥雲日天人不白黃河入海流欲窮千里目更上一層樓"

MODELS = {
    "gpt_learned": dict(name="transformer", num_layers=2, num_heads=2, emb_dim=16, max_len=16, positions="learned"),
    "gpt_rotary": dict(name="transformer", num_layers=2, num_heads=2, emb_dim=16, max_len=16, positions="rotary"),
    "lstm": dict(name="lstm", emb_dim=8, hidden_dim=16, num_layers=2, max_len=16),
}


def make_method(model="gpt_learned", chars=ENGLISH, specials=(), seed=0):
  """An untrained tiny language model (random weights give varied, reproducible samples)."""
  config = ml_collections.ConfigDict(dict(
      seed=0, total_steps=10, batch_size=2,
      data=dict(name="text", path="", seq_len=16, tokenizer="char", vocab=chars, specials=list(specials)),
      model=MODELS[model], method=dict(name="poetry" if "<eos>" in specials else "autoregressive",
                                       sample_tokens=20, temperature=1.0),
      optimizer=dict(name="adam", lr=1e-3)))
  method = methods.build(config)
  tokens = jnp.zeros((2, 17), jnp.int32)
  params, _ = meta.unbox(method.init(jax.random.key(seed), {"tokens": tokens, "mask": jnp.ones((2, 16))}))
  return method, params


@pytest.mark.parametrize("model", sorted(MODELS))
def test_causal_and_cache_matches_full_forward(model):
  method, params = make_method(model)
  net, v = method.model, {"params": params}
  tokens = jax.random.randint(jax.random.key(1), (3, 16), 0, method.tokenizer.vocab_size)
  full = net.apply(v, tokens)
  changed = net.apply(v, tokens.at[:, 9].set((tokens[:, 9] + 1) % method.tokenizer.vocab_size))
  np.testing.assert_array_equal(full[:, :9], changed[:, :9])  # the future cannot leak into the past
  assert np.abs(full[:, 9:] - changed[:, 9:]).max() > 1e-4
  # Prefill 6 tokens into the cache, then decode the rest one at a time.
  logits, cache = net.apply(v, tokens, net.init_cache(3, 16), 0, 6, method="decode")
  np.testing.assert_allclose(logits[:, :6], full[:, :6], atol=1e-5)
  for t in range(6, 16):
    step, cache = net.apply(v, tokens[:, t:t + 1], cache, t, method="decode")
    np.testing.assert_allclose(step[:, 0], full[:, t], atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_matches_cache():
  MODELS["gpt_bf16"] = dict(MODELS["gpt_rotary"], dtype="bfloat16")
  try:
    method, params = make_method("gpt_bf16")
  finally:
    del MODELS["gpt_bf16"]
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  net, v = method.model, {"params": params}
  tokens = jax.random.randint(jax.random.key(1), (2, 16), 0, method.tokenizer.vocab_size)
  full = net.apply(v, tokens)
  assert full.dtype == jnp.float32
  logits, _ = net.apply(v, tokens, net.init_cache(2, 16), 0, 16, method="decode")
  np.testing.assert_allclose(logits, full, atol=0.1)  # bf16 rounding, same computation


@pytest.mark.parametrize("model", sorted(MODELS))
def test_cached_and_uncached_decoding_give_identical_tokens(model):
  method, params = make_method(model)
  prompt = method.tokenizer.encode("the cat")
  # 40 new tokens in a 16-token window: the window slides (and the cache is rebuilt) several times.
  kw = dict(num=3, max_tokens=40, temperature=1.0)
  cached = method.generate_tokens(params, jax.random.key(3), prompt, cache=True, **kw)
  uncached = method.generate_tokens(params, jax.random.key(3), prompt, cache=False, **kw)
  np.testing.assert_array_equal(cached, uncached)
  assert cached.shape == (3, 40) and (cached >= 0).all()
  assert len({r.tobytes() for r in cached}) == 3


def test_seed_determinism_greedy_and_top_k_1():
  method, params = make_method()
  s = lambda seed, **kw: method.sample(params, {}, jax.random.key(seed), 4, prompt="ab", max_tokens=30, **kw)
  a, b, c = s(1), s(1), s(2)
  assert a == b and a != c
  assert all(t.startswith("ab") and len(t) == 32 for t in a)
  greedy = s(1, temperature=0.0)
  assert len(set(greedy)) == 1  # greedy ignores the key: every row is the same
  assert s(5, temperature=1.3, top_k=1) == greedy
  if hasattr(method._loop, "_cache_size"):  # a private jax API: checked where it exists
    compiled = method._loop._cache_size()
    method.sample(params, {}, jax.random.key(0), 4, prompt="a longer prompt", max_tokens=50)
    assert method._loop._cache_size() == compiled  # new prompt and length in the same bucket: no recompile


def test_filter_logits_top_k_top_p():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  kept = lambda x: np.isfinite(np.asarray(x))[0].tolist()
  assert kept(filter_logits(logits, 1.0, 2, 1.0)) == [True, True, False, False]
  assert kept(filter_logits(logits, 1.0, 0, 0.7)) == [True, True, False, False]   # 0.5 < 0.7 <= 0.8
  assert kept(filter_logits(logits, 1.0, 0, 0.5)) == [True, False, False, False]
  assert kept(filter_logits(logits, 1.0, 0, 1.0)) == [True] * 4
  np.testing.assert_allclose(filter_logits(logits, 2.0, 0, 1.0), logits / 2.0)
  # Peaked logits over a big vocabulary: float32 mass sums reach 1 early; top_p = 1 must still keep all.
  peaked = 6.0 * jax.random.normal(jax.random.key(0), (8, 5000))
  assert np.isfinite(np.asarray(filter_logits(peaked, 0.8, 0, 1.0))).all()


def test_stop_strings_cut_the_output():
  method, params = make_method()
  full = method.sample(params, {}, jax.random.key(0), 3, prompt="x", max_tokens=60)
  stop = full[0][3:5]  # a string the first sample is known to contain after the prompt
  cut = method.sample(params, {}, jax.random.key(0), 3, prompt="x", max_tokens=60, stop=[stop, "zzzz"])
  for f, c in zip(full, cut):
    assert f.startswith(c)
    assert stop not in c[1:]
    if stop in f[1:]:
      assert len(c) == f.index(stop, 1)
    else:
      assert c == f
  assert len(cut[0]) == 3


@pytest.mark.parametrize("form", ["五言绝句", "qiyan-jueju", "五言律詩", "qiyan_lushi"])
def test_constrained_poems_have_the_form(form):
  method, params = make_method("gpt_rotary", chars=HANZI + "，。ab", specials=("<eos>",))
  chars, lines = poetry.parse_form(form)
  poems = method.sample(params, {}, jax.random.key(0), 8, form=form)
  for p in poems:
    assert poetry.check_form(p.replace("\n", ""), chars, lines) == [], p
  acrostic = "春夏秋冬" if lines == 4 else "春夏秋冬山水風月"
  for cache in (True, False):
    poems = method.sample(params, {}, jax.random.key(1), 4, form=form, acrostic=acrostic, cache=cache)
    for p in poems:
      assert poetry.check_form(p.replace("\n", ""), chars, lines, acrostic) == [], p


def test_acrostic_in_other_script_and_errors():
  method, params = make_method("gpt_learned", chars=HANZI + "，。", specials=("<eos>",))
  # 风 (simplified) is found as 風 in this traditional vocabulary; the output can be converted back.
  [poem] = method.sample(params, {}, jax.random.key(0), 1, acrostic="春风秋月", script="simplified")
  assert [line[0] for line in poem.replace("，", "\n").replace("。", "\n").split()] == list("春风秋月")
  from artjax.errors import ArtjaxError
  with pytest.raises(ArtjaxError, match="form"):
    method.sample(params, {}, jax.random.key(0), 1, acrostic="春夏秋")
  with pytest.raises(ArtjaxError, match="known|accepted|form"):
    method.sample(params, {}, jax.random.key(0), 1, form="sonnet")
  plain, pparams = make_method()
  assert "form" not in plain.sample_options  # forms are offered by the poetry method only
  with pytest.raises(ArtjaxError, match="no sampling option"):
    plain.sample(pparams, {}, jax.random.key(0), 1, form="五言绝句")


def test_train_eval_and_sample_cli(tmp_path):
  text = tmp_path / "corpus.txt"
  rng = np.random.default_rng(0)
  text.write_text("".join(rng.choice(list("abcd efg\n"), 3000)) + "ROMEO: 春眠不覺曉\n" * 20, encoding="utf-8")
  work = tmp_path / "run"
  p = run_cli("-m", "artjax.train", "--config", "configs/text/shakespeare_char.py:smoke", "--workdir", str(work),
              f"--config.data.path={text}")
  assert p.returncode == 0, p.stderr
  assert "val loss" in p.stderr + p.stdout
  assert list((work / "samples").glob("*.txt"))
  saved = json.loads((work / "config.json").read_text())
  assert "春" in saved["data"]["vocab"]  # the vocabulary travels with the run
  p = run_cli("-m", "artjax.evaluate", "--workdir", str(work), "--batch", "8")
  assert p.returncode == 0, p.stderr
  row = json.loads((work / "eval" / "metrics.jsonl").read_text().splitlines()[-1])
  n = len(text.read_text(encoding="utf-8"))
  assert row["split"] == "val" and row["tokens"] == n - int(n * 0.9) - 1  # every val target once
  assert f"val loss {row['loss']:.4f}" in p.stdout
  text.unlink()  # sampling needs only the checkpoint
  out = tmp_path / "s.json"
  p = run_cli("-m", "artjax.sample", "--workdir", str(work), "--prompt", "ROMEO:", "--max-tokens", "25",
              "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9", "--n", "3", "--stop", "\n\n", "--seed", "7",
              "--out", str(out))
  assert p.returncode == 0, p.stderr
  got = json.loads(out.read_text(encoding="utf-8"))
  assert len(got["samples"]) == 3 and all(s.startswith("ROMEO:") for s in got["samples"])
  assert got["options"]["max_tokens"] == 25 and got["seed"] == 7 and got["step"] == 4
  txt = tmp_path / "s.txt"
  p = run_cli("-m", "artjax.sample", "--workdir", str(work), "--prompt", "ab", "--max_tokens", "10", "--no-cache",
              "--out", str(txt))
  assert p.returncode == 0, p.stderr
  assert txt.read_text(encoding="utf-8").startswith("ab")
  p = run_cli("-m", "artjax.sample", "--workdir", str(work), "--label", "3", "--out", str(txt))
  assert p.returncode == 2 and "label" in p.stderr and "Traceback" not in p.stderr


def test_evaluate_split_counts_every_val_target_once(tmp_path):
  text = tmp_path / "c.txt"
  text.write_text("hello world, " * 80, encoding="utf-8")
  from artjax.data.text import resolve
  from artjax.utils.config import load_config
  config = resolve(load_config("configs/text/shakespeare_char.py:smoke", {"data.path": str(text)}))
  method = methods.build(config)
  from artjax.data import make_source
  source = make_source(config.data, "val")
  params, _ = meta.unbox(method.init(jax.random.key(0), source[0] | {"tokens": source[0]["tokens"][None]}))
  n_val = len("hello world, " * 80) - int(len("hello world, " * 80) * 0.9)
  losses = []
  for batch in (3, 7):  # different padding of the last batch: padded rows must not count
    m = evaluate_split(method, params, {}, config.data, "val", batch)
    assert m["tokens"] == n_val - 1  # every target in the val text once (its first char has no context)
    assert np.isfinite(m["loss"]) and m["bpc"] == pytest.approx(m["loss"] / np.log(2))
    losses.append(m["loss"])
  assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_shakespeare_config_trains_from_tfds_mock(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from conftest import smoke_config
  config = smoke_config("configs/text/shakespeare_char.py:smoke", **{"data.name": "tfds_text", "total_steps": 2})
  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    state = train(config, tmp_path, progress=False)
  assert int(state.step) == 2
  assert json.loads((tmp_path / "config.json").read_text())["data"]["vocab"]
