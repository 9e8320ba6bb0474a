"""Text data: the tokenizer, vocab resolution, the text / tfds_text / chinese_poetry sources, poem forms."""

import hashlib
import json
import pathlib

import ml_collections
import numpy as np
import pytest

from artjax.data import Loader, SOURCES, make_source, text
from artjax.methods import poetry
from artjax.data.text import Tokenizer
from artjax.errors import ArtjaxError

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
DENGGUANQUELOU = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"  # 王之涣《登鹳雀楼》, traditional


def _config(**data):
  data.setdefault("tokenizer", "char")
  data.setdefault("vocab", "")
  data.setdefault("specials", ())
  return ml_collections.ConfigDict({"seed": 0, "data": data})


def _identity(ex, seed):
  del seed
  return ex


# ---------------------------------------------------------------------------------------------------
# Tokenizer


MIXED = "Hello, 世界!\n白日依山盡 — naïve 🙂"


def test_char_tokenizer_round_trip_mixed_text():
  chars = "".join(sorted(set(MIXED)))
  tok = Tokenizer("char", chars, ("<eos>",))
  ids = tok.encode(MIXED)
  assert ids.dtype == np.int32 and ids.shape == (len(MIXED),)
  assert ids.tolist() == [chars.index(c) for c in MIXED]
  assert tok.decode(ids) == MIXED
  assert tok.vocab_size == len(chars) + 1 and tok.eos_id == len(chars) and tok.unk_id is None
  framed = [tok.eos_id, *ids.tolist(), tok.eos_id]
  assert tok.decode(framed) == MIXED
  assert tok.decode(framed, skip_specials=False) == "<eos>" + MIXED + "<eos>"
  assert tok.decode(iter(framed)) == MIXED  # any int iterable
  assert tok.token_strings() == list(chars) + ["<eos>"]


def test_char_ids_follow_the_given_order():
  tok = Tokenizer("char", "ba")
  assert tok.encode("abba").tolist() == [1, 0, 0, 1]
  assert tok.encode("").shape == (0,)


def test_byte_tokenizer_round_trip_mixed_text():
  tok = Tokenizer("byte", specials=("<eos>",))
  ids = tok.encode(MIXED)
  assert ids.dtype == np.int32 and ids.tolist() == list(MIXED.encode("utf-8"))
  assert tok.decode(ids) == MIXED
  assert tok.vocab_size == 257 and tok.eos_id == 256
  assert tok.decode([256, *ids.tolist(), 256], skip_specials=False) == "<eos>" + MIXED + "<eos>"
  assert tok.decode(ids[:-1]) == MIXED[:-1] + "\ufffd"  # cut inside the emoji's 4 bytes
  strings = tok.token_strings()
  assert len(strings) == 257 and strings[65] == "A" and strings[0xE4] == "\xe4" and strings[256] == "<eos>"


def test_unknown_character_error_or_unk():
  with pytest.raises(ArtjaxError, match="'z'"):
    Tokenizer("char", "abc").encode("abz")
  tok = Tokenizer("char", "abc", ("<eos>", "<unk>"))
  assert tok.unk_id == 4
  assert tok.encode("azb").tolist() == [0, 4, 1]
  assert tok.decode([0, 4, 1], skip_specials=False) == "a<unk>b"


def test_tokenizer_bad_input():
  with pytest.raises(ArtjaxError, match="outside the vocabulary"):
    Tokenizer("char", "abc").decode([3])
  with pytest.raises(ArtjaxError, match="resolve"):
    Tokenizer("char", "")
  with pytest.raises(ArtjaxError, match="'word'"):
    Tokenizer("word", "abc")
  with pytest.raises(ArtjaxError, match="repeats"):
    Tokenizer("char", "aba")


# ---------------------------------------------------------------------------------------------------
# resolve / build_vocab


def _write(path: pathlib.Path, content: str) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(content, encoding="utf-8")
  return path


def test_resolve_fills_vocab_and_from_config_round_trips(tmp_path):
  body = "To be, or not to be: 白日依山盡。\n" * 3
  f = _write(tmp_path / "t.txt", body)
  config = _config(name="text", path=str(f), seq_len=8)
  resolved = text.resolve(config)
  assert resolved is not config and config.data.vocab == ""  # a copy; the input is untouched
  assert resolved.data.vocab == "".join(sorted(set(body))) and tuple(resolved.data.specials) == ()
  tok = Tokenizer.from_config(resolved.data)
  assert tok.decode(tok.encode(body)) == body
  # The config is saved as JSON with checkpoints: the vocabulary must survive that trip.
  reloaded = ml_collections.ConfigDict(json.loads(resolved.to_json()))
  assert Tokenizer.from_config(reloaded.data).encode(body).tolist() == tok.encode(body).tolist()
  assert text.resolve(resolved) is resolved  # already resolved: nothing to do


def test_resolve_min_count_adds_unk_and_byte_needs_no_vocab(tmp_path):
  f = _write(tmp_path / "t.txt", "aaabbbc")
  resolved = text.resolve(_config(name="text", path=str(f), seq_len=2, min_count=2))
  assert resolved.data.vocab == "ab" and tuple(resolved.data.specials) == ("<unk>",)
  assert Tokenizer.from_config(resolved.data).encode("abc").tolist() == [0, 1, 2]
  byte = text.resolve(_config(name="text", path=str(f), seq_len=2, tokenizer="byte"))
  assert byte.data.vocab == "" and tuple(byte.data.specials) == ()
  poems = text.resolve(_config(name="chinese_poetry", dir=str(tmp_path / "nowhere"), tokenizer="byte"))
  assert tuple(poems.data.specials) == ("<eos>",)  # no corpus pass needed for bytes


def test_resolve_is_a_no_op_for_image_configs():
  from conftest import smoke_config

  config = smoke_config()
  assert not text.is_text(config.data)
  assert text.resolve(config) is config
  assert text.is_text(_config(name="chinese_poetry").data)


def test_convert_script():
  assert text.convert_script("白日依山盡", "") == "白日依山盡"
  assert text.convert_script("白日依山盡", "simplified") == "白日依山尽"
  assert text.convert_script("白日依山尽", "traditional") == "白日依山盡"
  with pytest.raises(ArtjaxError, match="'klingon'"):
    text.convert_script("白", "klingon")


# ---------------------------------------------------------------------------------------------------
# text source


ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ"


def _text_config(tmp_path, body, **kw):
  f = _write(tmp_path / "corpus.txt", body)
  return text.resolve(_config(name="text", path=str(f), **kw)).data


def test_text_source_split_and_train_windows(tmp_path):
  body = "".join(ALPHABET[(i * 7) % len(ALPHABET)] for i in range(100))
  cfg = _text_config(tmp_path, body, seq_len=8)  # default val_fraction 0.1: 90 / 10 characters
  tok = Tokenizer.from_config(cfg)
  train = make_source(cfg, "train")
  assert len(train) == 90 - 8
  for i in (0, 37, len(train) - 1):
    ex = train[i]
    assert ex["tokens"].dtype == np.int32 and ex["tokens"].shape == (9,)
    assert ex["mask"].dtype == np.float32 and ex["mask"].shape == (8,)
    assert tok.decode(ex["tokens"]) == body[i:i + 9]
    assert ex["mask"].tolist() == [1.0] * 8
  assert tok.decode(train[-1]["tokens"]) == body[81:90]  # the last window ends at the split boundary
  with pytest.raises(IndexError):
    train[len(train)]


def test_text_val_windows_cover_every_target_once(tmp_path):
  body = "".join(ALPHABET[(i * 5) % len(ALPHABET)] for i in range(200))
  cfg = _text_config(tmp_path, body, seq_len=8, val_fraction=0.125)  # 175 / 25 characters
  tok = Tokenizer.from_config(cfg)
  val = make_source(cfg, "val")
  val_text = body[175:]
  assert len(val) == 3  # 24 targets in windows of 8
  examples = [val[i] for i in range(len(val))]
  assert sum(float(e["mask"].sum()) for e in examples) == len(val_text) - 1
  targets = np.concatenate([e["tokens"][1:][e["mask"] > 0] for e in examples])
  assert targets.tolist() == tok.encode(val_text)[1:].tolist()
  assert [tok.decode(e["tokens"][:1]) for e in examples] == [val_text[0], val_text[8], val_text[16]]

  cfg2 = _text_config(tmp_path, body[:190], seq_len=8, val_fraction=0.1)  # 171 / 19: partial last window
  val2 = make_source(cfg2, "val")
  last = val2[len(val2) - 1]
  assert len(val2) == 3 and last["mask"].tolist() == [1.0, 1.0] + [0.0] * 6
  assert sum(float(val2[i]["mask"].sum()) for i in range(3)) == 18


def test_text_source_directory_is_sorted_and_concatenated(tmp_path):
  _write(tmp_path / "d" / "b" / "2.txt", "ccccdddd")
  _write(tmp_path / "d" / "a.txt", "aaaabbbb")
  _write(tmp_path / "d" / "skip.md", "zzzz")
  cfg = text.resolve(_config(name="text", path=str(tmp_path / "d"), seq_len=3, val_fraction=0.25)).data
  assert cfg.vocab == "abcd"  # the .md file is not read
  tok = Tokenizer.from_config(cfg)
  train, val = make_source(cfg, "train"), make_source(cfg, "val")
  assert tok.decode(train.tokens) == "aaaabbbbcccc" and tok.decode(val.tokens) == "dddd"


def test_text_source_errors(tmp_path):
  with pytest.raises(ArtjaxError, match="no_such_file.txt"):
    make_source(_config(name="text", path=str(tmp_path / "no_such_file.txt"), vocab="ab", seq_len=4).data,
                "train")
  cfg = _text_config(tmp_path, "ab" * 20, seq_len=4)
  with pytest.raises(ArtjaxError, match="'train', 'val'"):
    make_source(cfg, "test")
  short = _text_config(tmp_path, "ab" * 20, seq_len=36)  # 36 train characters < one window of 37
  with pytest.raises(ArtjaxError, match="too few"):
    make_source(short, "train")


def test_text_batches_through_the_loader(tmp_path):
  cfg = _text_config(tmp_path, ALPHABET * 3, seq_len=6)
  loader = Loader(make_source(cfg, "train"), _identity, global_batch=4, seed=0,
                  process_index=0, process_count=1)
  b = loader.batch(0)
  assert b["tokens"].shape == (4, 7) and b["tokens"].dtype == np.int32
  assert b["mask"].shape == (4, 6) and b["mask"].dtype == np.float32
  assert np.array_equal(b["tokens"], loader.batch(0)["tokens"])  # deterministic


# ---------------------------------------------------------------------------------------------------
# tfds_text (TFDS's own mock: random text for the tiny_shakespeare builder, no TensorFlow, no files)


def test_tfds_text_source_with_mock(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  calls = []
  real = tfds.data_source

  def spy(name, **kw):
    calls.append((name, kw.get("split"), kw.get("download")))
    return real(name, **kw)

  monkeypatch.setattr(tfds, "data_source", spy)
  data_dir = tmp_path / "tfds"
  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    joined = "".join(t for split in ("train", "validation", "test")
                     for t in (lambda raw: [raw[i]["text"] for i in range(len(raw))])(
                         real("tiny_shakespeare", split=split, data_dir=str(data_dir), download=False)))
    config = text.resolve(_config(name="tfds_text", tfds_data_dir=str(data_dir), seq_len=4))
    assert config.data.vocab == "".join(sorted(set(joined)))
    tok = Tokenizer.from_config(config.data)
    val = make_source(config.data, "val")
    train = make_source(config.data, "train")
  assert {("tiny_shakespeare", s, False) for s in ("train", "validation", "test")} <= set(calls)
  assert all(download is False for _, _, download in calls)
  # The splits joined in order, then nanoGPT's 90/10 (TFDS's validation split alone is only 5%).
  n_train = int(len(joined) * 0.9)
  assert tok.decode(train.tokens) == joined[:n_train] and tok.decode(val.tokens) == joined[n_train:]
  assert tok.decode(train[1]["tokens"]) == joined[1:6]
  assert sum(float(val[i]["mask"].sum()) for i in range(len(val))) == len(joined) - n_train - 1
  assert not data_dir.exists()  # nothing downloaded or prepared


TINY_TEXT = {"train": ["First Citizen:\n", "白日依山"], "validation": ["val text"], "test": ["xyz"]}


@pytest.fixture(scope="module")
def tiny_text_dir(tmp_path_factory):
  """A real prepared TFDS text dataset (array_record; TFDS returns the text as bytes, unlike its mock)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  pytest.importorskip("array_record")

  class ArtjaxTinyText(tfds.core.GeneratorBasedBuilder):
    name = "artjax_tiny_text"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
          {"text": tfds.features.Text()}), disable_shuffling=True)

    def _split_generators(self, dl_manager):
      del dl_manager
      return {s: self._generate_examples(t) for s, t in TINY_TEXT.items()}

    def _generate_examples(self, texts):
      for i, t in enumerate(texts):
        yield i, {"text": t}

  root = tmp_path_factory.mktemp("tiny_text")
  with pytest.MonkeyPatch.context() as mp:
    import tempfile

    (root / "tmp").mkdir()
    mp.setattr(tempfile, "tempdir", str(root / "tmp"))
    ArtjaxTinyText(data_dir=str(root / "data"), file_format="array_record").download_and_prepare()
  return root / "data"


def test_tfds_text_source_on_prepared_dataset(tiny_text_dir):
  config = text.resolve(_config(name="tfds_text", tfds_name="artjax_tiny_text",
                                tfds_data_dir=str(tiny_text_dir), seq_len=4))
  assert config.data.vocab == "".join(sorted(set("".join(sum(TINY_TEXT.values(), [])))))  # all splits
  tok = Tokenizer.from_config(config.data)
  train, val = make_source(config.data, "train"), make_source(config.data, "val")
  joined = "First Citizen:\n白日依山val textxyz"  # train, validation, test in order; then 90/10
  n_train = int(len(joined) * 0.9)
  assert tok.decode(train.tokens) == joined[:n_train] and tok.decode(val.tokens) == joined[n_train:]
  assert tok.decode(train[14]["tokens"]) == joined[14:19]


def test_tfds_text_unprepared_is_a_clear_error(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  cfg = _config(name="tfds_text", tfds_data_dir=str(tmp_path), vocab="ab", seq_len=4).data
  with pytest.raises(ArtjaxError, match="tiny_shakespeare") as err:
    make_source(cfg, "train")
  assert "\n" not in str(err.value) and "tfds build" in str(err.value)


# ---------------------------------------------------------------------------------------------------
# chinese_poetry


TANG = [  # paragraphs layout, traditional, like 全唐诗/poet.tang.*.json
    {"author": "王之渙", "title": "登鸛雀樓", "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]},
    {"author": "孟浩然", "title": "春曉", "paragraphs": ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"]},
    {"author": "李白", "title": "靜夜思", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
    {"author": "王之渙", "title": "登鸛雀樓", "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"]},
    {"author": "柳宗元", "title": "江雪", "paragraphs": ["千山鳥飛絕，萬徑人蹤滅。", "孤舟蓑笠翁，獨釣寒江雪。"]},
]
SHIJING = [  # content layout, simplified, like 诗经/shijing.json
    {"title": "关雎", "chapter": "国风", "section": "周南", "content": ["关关雎鸠，在河之洲。", "窈窕淑女，君子好逑。"]},
    {"title": "桃夭", "chapter": "国风", "section": "周南", "content": ["桃之夭夭，灼灼其华。"]},
]


def _poem(item):
  return "".join(item.get("paragraphs") or item["content"])


UNIQUE_POEMS = [_poem(p) for p in TANG[:3] + TANG[4:] + SHIJING]


def _poetry_dir(tmp_path) -> pathlib.Path:
  root = tmp_path / "chinese_poetry"
  _write(root / "全唐诗" / "poet.tang.0.json", json.dumps(TANG, ensure_ascii=False))
  _write(root / "诗经" / "shijing.json", json.dumps(SHIJING, ensure_ascii=False))
  return root


def _poetry_config(root, **kw):
  kw.setdefault("seq_len", 32)
  kw.setdefault("val_fraction", 0.5)
  return text.resolve(_config(name="chinese_poetry", dir=str(root), **kw)).data


def test_poetry_documents_vocab_and_deterministic_split(tmp_path):
  cfg = _poetry_config(_poetry_dir(tmp_path))
  assert text.load_documents(cfg) == UNIQUE_POEMS  # file order, duplicate kept once
  assert cfg.vocab == "".join(sorted(set("".join(UNIQUE_POEMS)))) and tuple(cfg.specials) == ("<eos>",)
  in_val = [int(hashlib.md5(p.encode()).hexdigest(), 16) % 1000 < 500 for p in UNIQUE_POEMS]
  assert 0 < sum(in_val) < len(UNIQUE_POEMS)  # both splits non-empty with these poems
  tok = Tokenizer.from_config(cfg)
  got = {}
  for split in ("train", "val"):
    src = make_source(cfg, split)
    got[split] = [tok.decode(src[i]["tokens"]) for i in range(len(src))]
    again = make_source(cfg, split)
    assert [tok.decode(again[i]["tokens"]) for i in range(len(again))] == got[split]
  assert got["val"] == [p for p, v in zip(UNIQUE_POEMS, in_val) if v]
  assert got["train"] == [p for p, v in zip(UNIQUE_POEMS, in_val) if not v]
  assert not set(got["train"]) & set(got["val"])


def test_poetry_example_framing_padding_and_truncation(tmp_path):
  root = _poetry_dir(tmp_path)
  cfg = _poetry_config(root, val_fraction=0.0)
  tok = Tokenizer.from_config(cfg)
  src = make_source(cfg, "train")
  assert len(src) == len(UNIQUE_POEMS)
  ex = src[UNIQUE_POEMS.index(DENGGUANQUELOU)]
  n = len(DENGGUANQUELOU)  # 24
  assert ex["tokens"].shape == (33,) and ex["mask"].shape == (32,)
  assert ex["tokens"][0] == tok.eos_id and ex["tokens"][n + 1] == tok.eos_id
  assert tok.decode(ex["tokens"][1:n + 1]) == DENGGUANQUELOU
  assert (ex["tokens"][n + 2:] == tok.eos_id).all()  # padding
  assert ex["mask"].tolist() == [1.0] * (n + 1) + [0.0] * (32 - n - 1)  # the final eos target counts
  short = make_source(_poetry_config(root, val_fraction=0.0, seq_len=10), "train")
  cut = short[UNIQUE_POEMS.index(DENGGUANQUELOU)]
  assert tok.decode(cut["tokens"], skip_specials=False) == "<eos>" + DENGGUANQUELOU[:10]
  assert cut["mask"].tolist() == [1.0] * 10


def test_poetry_script_conversion_files_and_max_chars(tmp_path):
  root = _poetry_dir(tmp_path)
  simp = _poetry_config(root, script="simplified", val_fraction=0.0)
  docs = text.load_documents(simp)
  assert "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。" in docs
  assert "盡" not in simp.vocab and "尽" in simp.vocab
  trad = _poetry_config(root, script="traditional", val_fraction=0.0)
  assert "關關雎鳩，在河之洲。窈窕淑女，君子好逑。" in text.load_documents(trad)
  only_tang = _poetry_config(root, files=["全唐诗/*.json"], val_fraction=0.0)
  assert text.load_documents(only_tang) == UNIQUE_POEMS[:4]
  short = _poetry_config(root, max_chars=10, val_fraction=0.0)
  assert text.load_documents(short) == ["桃之夭夭，灼灼其华。"]


def test_poetry_errors(tmp_path):
  with pytest.raises(ArtjaxError, match="missing_dir"):
    text.resolve(_config(name="chinese_poetry", dir=str(tmp_path / "missing_dir"), seq_len=8))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ArtjaxError, match="no JSON files"):
    text.resolve(_config(name="chinese_poetry", dir=str(tmp_path / "empty"), seq_len=8))
  _write(tmp_path / "nopoems" / "x.json", json.dumps([{"title": "no lines"}]))
  with pytest.raises(ArtjaxError, match="no poems"):
    text.resolve(_config(name="chinese_poetry", dir=str(tmp_path / "nopoems"), seq_len=8))
  _write(tmp_path / "bad" / "x.json", "{not json")
  with pytest.raises(ArtjaxError, match="x.json"):
    text.resolve(_config(name="chinese_poetry", dir=str(tmp_path / "bad"), seq_len=8))
  cfg = _poetry_config(_poetry_dir(tmp_path))
  with pytest.raises(ArtjaxError, match="'train', 'val'"):
    make_source(cfg, "validation")


# ---------------------------------------------------------------------------------------------------
# The real corpora in ../shared/data (skipped when absent)


def test_tiny_shakespeare_matches_nanogpt():
  path = SHARED_DATA / "tiny_shakespeare" / "input.txt"
  if not path.is_file():
    pytest.skip("../shared/data/tiny_shakespeare not available")
  cfg = text.resolve(_config(name="text", path=str(path), seq_len=256)).data
  assert len(cfg.vocab) == 65 and tuple(cfg.specials) == ()
  train, val = make_source(cfg, "train"), make_source(cfg, "val")
  assert len(train.tokens) == 1_003_854 and len(val.tokens) == 111_540
  body = path.read_text()
  stoi = {c: i for i, c in enumerate(sorted(set(body)))}  # nanoGPT's prepare.py
  assert train[0]["tokens"].tolist() == [stoi[c] for c in body[:257]]
  assert len(val) == -(-(111_540 - 1) // 256)


def test_tang_poems_load_and_decode():
  root = SHARED_DATA / "chinese_poetry"
  if not (root / "全唐诗").is_dir():
    pytest.skip("../shared/data/chinese_poetry not available")
  cfg = text.resolve(_config(name="chinese_poetry", dir=str(root), files=["全唐诗/*.json"], seq_len=64,
                             val_fraction=0.05)).data
  tok = Tokenizer.from_config(cfg)
  train, val = make_source(cfg, "train"), make_source(cfg, "val")
  assert len(train) + len(val) > 5000 and 0.02 < len(val) / (len(train) + len(val)) < 0.08
  docs = text.load_documents(cfg)
  assert DENGGUANQUELOU in docs
  assert poetry.check_form(DENGGUANQUELOU, *poetry.parse_form("五言绝句")) == []
  split = train if DENGGUANQUELOU in train.docs else val
  ex = split[split.docs.index(DENGGUANQUELOU)]
  assert tok.decode(ex["tokens"]) == DENGGUANQUELOU
  assert poetry.form_mask(tok, 5, 4).shape == (25, tok.vocab_size)


# ---------------------------------------------------------------------------------------------------
# poetry forms


@pytest.mark.parametrize("name,form", [
    ("五言绝句", (5, 4)), ("七言绝句", (7, 4)), ("五言律诗", (5, 8)), ("七言律诗", (7, 8)),
    ("五言絕句", (5, 4)), ("七言絕句", (7, 4)), ("五言律詩", (5, 8)), ("七言律詩", (7, 8)),
    ("wuyan-jueju", (5, 4)), ("QIYAN_JUEJU", (7, 4)), ("Wuyan_Lushi", (5, 8)), ("qiyan-lushi", (7, 8)),
])
def test_parse_form(name, form):
  assert poetry.parse_form(name) == form


def test_parse_form_unknown_lists_names():
  with pytest.raises(ArtjaxError, match="sonnet") as err:
    poetry.parse_form("sonnet")
  assert "五言绝句" in str(err.value) and "qiyan-lushi" in str(err.value)


def test_form_layout():
  layout = poetry.form_layout(5, 4)
  assert len(layout) == 24
  assert [j for j, k in enumerate(layout) if k != "char"] == [5, 11, 17, 23]
  assert [layout[j] for j in (5, 11, 17, 23)] == ["，", "。", "，", "。"]
  assert len(poetry.form_layout(7, 8)) == 64


def _poem_tokenizer():
  chars = "".join(sorted(set("白日依山尽黄河入海流欲穷千里目更上一层楼，。ab!")))
  return Tokenizer("char", chars, ("<eos>",)), chars


def test_form_mask_rows():
  tok, chars = _poem_tokenizer()
  mask = poetry.form_mask(tok, 5, 4)
  assert mask.shape == (25, tok.vocab_size) and mask.dtype == bool
  hanzi = np.array([poetry.is_hanzi(c) for c in chars] + [False])
  assert hanzi.sum() == len(chars) - 5  # not ，。a b !
  for j, kind in enumerate(poetry.form_layout(5, 4)):
    if kind == "char":
      assert np.array_equal(mask[j], hanzi), j
    else:
      assert mask[j].sum() == 1 and mask[j, chars.index(kind)], j
  assert mask[24].sum() == 1 and mask[24, tok.eos_id]


def test_form_mask_acrostic():
  tok, chars = _poem_tokenizer()
  plain = poetry.form_mask(tok, 5, 4)
  mask = poetry.form_mask(tok, 5, 4, acrostic="白黃欲更")  # 黃 is traditional: the vocab has 黄
  for line, ch in enumerate("白黄欲更"):
    row = line * 6
    assert mask[row].sum() == 1 and mask[row, chars.index(ch)]
  others = [j for j in range(25) if j % 6 != 0 or j == 24]
  assert np.array_equal(mask[others], plain[others])
  with pytest.raises(ArtjaxError, match="'龍'"):
    poetry.form_mask(tok, 5, 4, acrostic="白龍欲更")
  with pytest.raises(ArtjaxError, match="4 lines"):
    poetry.form_mask(tok, 5, 4, acrostic="白黄")


def test_form_mask_needs_punctuation_and_eos():
  with pytest.raises(ArtjaxError, match="'。'"):
    poetry.form_mask(Tokenizer("char", "白日，", ("<eos>",)), 5, 4)
  with pytest.raises(ArtjaxError, match="<eos>"):
    poetry.form_mask(Tokenizer("char", "白日，。"), 5, 4)


def test_check_form():
  assert poetry.check_form(DENGGUANQUELOU, 5, 4) == []
  assert poetry.check_form(DENGGUANQUELOU, 5, 4, acrostic="白黄欲更") == []  # either script matches
  assert poetry.check_form(DENGGUANQUELOU, 7, 4) != []
  problems = poetry.check_form("白日依山盡，黃河入海流。欲窮千里目，", 5, 4)
  assert problems == ["has 3 lines, the form has 4"]
  problems = poetry.check_form("白日依山盡了，黃河入海流。欲窮千里目。更上一層a。", 5, 4, acrostic="白黃欲春")
  assert any("line 1" in p and "6 characters" in p for p in problems)
  assert any("line 3" in p and "'，'" in p for p in problems)
  assert any("line 4" in p and "'a'" in p for p in problems)
  assert any("line 4" in p and "'春'" in p for p in problems)
  assert not any("line 2" in p for p in problems)


def test_is_hanzi():
  assert all(poetry.is_hanzi(c) for c in "白盡尽㮰𦈡豈")  # main block, ext. A, ext. B, compatibility
  assert not any(poetry.is_hanzi(c) for c in "，。a!□《 ")
  assert not poetry.is_hanzi("白日")


def test_text_sources_are_registered():
  assert {"text", "tfds_text", "chinese_poetry"} <= set(SOURCES.names())
