"""Typed sampling options: one check in the library, the CLI, the config and the API; CLI options' effects."""

import json
import math

import jax
import numpy as np
import pytest

from artjax import encoders, methods, options
from artjax.errors import ArtjaxError
from artjax.options import OptionError
from conftest import run_cli, smoke_config
from test_language_models import make_method


def test_plain_string_stop_is_one_sequence():
  method, params = make_method()
  s = lambda **kw: method.sample(params, {}, jax.random.key(0), 4, prompt="ab", max_tokens=60, **kw)  # noqa: E731
  full = s()
  stop = full[1][4:6]
  assert s(stop=stop) == s(stop=[stop])  # a str is one stop sequence, not a set of characters
  assert all(stop not in t[2:] for t in s(stop=stop))
  lengths = [len(t) for t in s(stop=stop)]
  assert lengths == [2 + t[2:].find(stop) if stop in t[2:] else len(t) for t in full]


@pytest.mark.parametrize("name,value,why", [
    ("temperature", math.nan, "finite"), ("temperature", math.inf, "finite"), ("temperature", -0.5, ">= 0"),
    ("top_p", 0.0, "> 0"), ("top_p", 1.5, "<= 1"), ("top_k", -1, ">= 0"), ("max_tokens", 0, ">= 1"),
    ("stop", ["a"] * 5, "at most 4"), ("stop", 3, "string"), ("cache", "yes", "true or false"),
    ("top_k", 2.5, "integer"), ("form", "五言绝句", "no sampling option")])
def test_text_options_are_checked(name, value, why):
  method, params = make_method()
  with pytest.raises(OptionError, match=why) as e:
    method.sample(params, {}, jax.random.key(0), 2, **{name: value})
  assert e.value.param == name


def test_continuation_script_and_stop_on_the_returned_text():
  method, params = make_method(chars="春夏秋冬山水風月花鳥雲日天人，。", specials=("<eos>",))
  [poem] = method.sample(params, {}, jax.random.key(0), 1, form="五言绝句", prompt="春", script="simplified")
  assert poem == "春" + poem.continuation and "\n" in poem  # the prompt is not part of the continuation
  [cut] = method.sample(params, {}, jax.random.key(0), 1, form="五言绝句", prompt="春", script="simplified",
                        stop="\n")
  assert cut == poem[:poem.index("\n")] and cut.finish_reason == "stop"  # stops apply to the text as returned
  [simp] = method.sample(params, {}, jax.random.key(0), 1, form="五言绝句", prompt="風", script="simplified")
  assert simp.startswith("风") and simp == "风" + simp.continuation  # the prompt, converted, is not repeated


def test_form_with_infinite_temperature_is_refused():
  method, params = make_method(chars="春夏秋冬山水風月花鳥雲日天人，。", specials=("<eos>",))
  with pytest.raises(OptionError, match="finite"):
    method.sample(params, {}, jax.random.key(0), 2, form="五言绝句", temperature=float("inf"))
  with pytest.raises(OptionError, match="simplified") as e:
    method.sample(params, {}, jax.random.key(0), 2, script="klingon")
  with pytest.raises(OptionError, match="needs a form") as e:
    method.sample(params, {}, jax.random.key(0), 1, acrostic="春夏秋")
  assert e.value.param == "acrostic"


def test_image_options_are_checked():
  config = smoke_config("configs/diffusion/mnist_ddpm.py:smoke", **{"model.num_classes": 10})
  method = methods.build(config)
  for bad, why in [({"steps": 0}, ">= 1"), ({"steps": 10 ** 6}, "<="), ({"guidance": math.nan}, "finite"),
                   ({"eta": -1.0}, ">= 0"), ({"sampler": "euler"}, "ddpm, ddim"), ({"label": 10}, "out of range")]:
    with pytest.raises(OptionError, match=why):
      method.check_options(bad)
  assert method.check_options({"steps": 5.0, "guidance": 2}) == {"steps": 5, "guidance": 2.0}


def test_config_defaults_obey_the_same_checks():
  base = dict(seed=0, total_steps=1, batch_size=2, optimizer=dict(name="adam", lr=1e-3),
              data=dict(name="text", path="", seq_len=16, tokenizer="char", vocab="abc", specials=[]),
              model=dict(name="lstm", emb_dim=8, hidden_dim=8, num_layers=1, max_len=16))
  import ml_collections

  for temperature in (math.nan, -1.0):
    cfg = ml_collections.ConfigDict({**base, "method": dict(name="autoregressive", temperature=temperature)})
    with pytest.raises(OptionError, match="temperature"):
      methods.build(cfg)
  with pytest.raises(ArtjaxError, match="steps"):
    methods.build(smoke_config("configs/diffusion/mnist_ddpm.py:smoke", **{"method.sample_steps": 0}))


def test_strict_json_and_option_descriptions():
  with pytest.raises(ArtjaxError, match="strict JSON"):
    encoders.strict_json({"x": float("nan")})
  o = options.Option("top_p", "float", "p", minimum=0.0, exclusive_minimum=True, maximum=1.0)
  assert o.describe() == {"name": "top_p", "type": "float", "help": "p", "default": None, "minimum": 0.0,
                          "maximum": 1.0, "exclusive_minimum": True}
  with pytest.raises(ValueError, match="declared as int and as float"):
    options.union([[options.Option("x", "int", "")], [options.Option("x", "float", "")]])


def test_resume_keeps_the_stored_vocabulary(tmp_path):
  from artjax.train.loop import Trainer, train

  corpus = tmp_path / "c.txt"
  rng = np.random.default_rng(0)
  corpus.write_text("".join(rng.choice(list("abcd $\n"), 2000)), encoding="utf-8")
  cfg = smoke_config("configs/text/shakespeare_char.py:smoke", **{"data.path": str(corpus), "total_steps": 2,
                                                                   "eval_every": 0, "sample_every": 0})
  train(cfg, tmp_path / "run", progress=False)
  vocab = json.loads((tmp_path / "run" / "config.json").read_text())["data"]["vocab"]
  corpus.write_text(corpus.read_text().replace("$", "~"), encoding="utf-8")  # same size, one char swapped
  with pytest.raises(ArtjaxError, match="not in the vocabulary stored with the checkpoint"):
    Trainer(cfg, tmp_path / "run")
  corpus.write_text(corpus.read_text().replace("~", "").replace("a", ""), encoding="utf-8")  # fewer chars: fits
  trainer = Trainer(cfg, tmp_path / "run")
  assert trainer.config.data.vocab == vocab  # not rebuilt from the changed corpus (which lacks 'a' and '$')


# --- the CLI: each text option changes what it should --------------------------------------------

def sample(workdir, out, *args):
  p = run_cli("-m", "artjax.sample", "--workdir", str(workdir), "--out", str(out), *args)
  return p


def texts(path):
  return json.loads(path.read_text(encoding="utf-8"))


def test_text_cli_options_have_their_effect(served_runs, tmp_path):
  work = served_runs["text"]
  common = ("--prompt", "ROMEO:", "--max-tokens", "40", "--seed", "3")
  outs = {}
  for name, args in {"base": ("--n", "5"), "chunked": ("--n", "5", "--batch", "2"), "nocache": ("--n", "5", "--no-cache"),
                     "greedy": ("--n", "2", "--temperature", "0"), "topk1": ("--n", "2", "--top-k", "1"),
                     "topp": ("--n", "2", "--top-p", "0.0001"),
                     "stop": ("--n", "5", "--stop", "\\n\\n", "--stop", "C:\\Users", "--stop", "\\")}.items():
    p = sample(work, tmp_path / f"{name}.json", *common, *args)
    assert p.returncode == 0, p.stderr
    outs[name] = texts(tmp_path / f"{name}.json")
  base = outs["base"]["samples"]
  assert len(set(base)) == 5 and outs["base"]["step"] == 4 and outs["base"]["seed"] == 3
  assert outs["chunked"]["samples"] == base    # --batch 2: same 5 samples, computed 2 at a time
  assert outs["nocache"]["samples"] == base    # --no-cache recomputes the window: same tokens
  greedy = outs["greedy"]["samples"]
  assert greedy[0] == greedy[1] and greedy != base[:2]
  assert outs["topk1"]["samples"] == greedy and outs["topp"]["samples"] == greedy
  assert outs["stop"]["options"]["stop"] == ["\n\n", "C:\\Users", "\\"]  # escapes read; other backslashes kept
  for cut, whole in zip(outs["stop"]["samples"], base):
    i = whole.find("\n\n", len("ROMEO:"))
    assert cut == (whole if i < 0 else whole[:i])
  assert "prompt" not in outs["base"]["options"]  # only with --record_prompt
  p = sample(work, tmp_path / "x.json", *common, "--temperature", "nan")
  assert p.returncode == 2 and "finite" in p.stderr and "Traceback" not in p.stderr
  p = sample(work, tmp_path / "x.json", *common, "--top-p", "2")
  assert p.returncode == 2 and "top_p" in p.stderr
