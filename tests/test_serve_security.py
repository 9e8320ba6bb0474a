"""The server's security pieces: API keys (store and CLI), rate limits, and content filters."""

import hmac
import importlib.resources
import json
import math
import os
import stat
import threading

import pytest

from artjax.errors import ArtjaxError
from artjax.serve import keys, limits
from artjax.serve.content_filter import WordListFilter, combine, default_filter
from artjax.serve.keys import KeyStore
from artjax.serve.limits import RateLimiter


# --- API keys ---------------------------------------------------------------------------------

def test_key_round_trip(tmp_path):
  path = tmp_path / "conf" / "keys.json"  # the parent directory is created on save
  store = KeyStore(path)
  assert len(store) == 0 and store.list() == []
  alice = store.add("alice")
  bob = store.add("bob@example.com")
  assert alice.startswith("ajx-") and len(alice) > 40 and alice != bob
  assert store.verify(alice) == "alice" and store.verify(bob) == "bob@example.com"
  assert store.verify(alice + "x") is None and store.verify("") is None and store.verify(None) is None
  assert store.verify("\ud800") is None  # a lone surrogate from a client must not raise
  # A fresh store reads the same file.
  again = KeyStore(path)
  assert len(again) == 2 and again.verify(bob) == "bob@example.com"
  again.revoke("alice")
  assert again.verify(alice) is None and again.verify(bob) == "bob@example.com"
  store.reload()
  assert store.verify(alice) is None and [e["name"] for e in store.list()] == ["bob@example.com"]


def test_key_file_holds_only_hashes_and_is_private(tmp_path):
  path = tmp_path / "private" / "keys.json"
  store = KeyStore(path)
  key = store.add("alice")
  text = path.read_text()
  assert key not in text and key[4:] not in text
  entry = json.loads(text)["keys"][0]
  assert set(entry) == {"name", "sha256", "created"} and len(entry["sha256"]) == 64
  assert entry["created"].endswith("Z")
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
  assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temp file left behind
  assert "sha256" not in json.dumps(store.list())


def test_key_name_errors(tmp_path):
  store = KeyStore(tmp_path / "keys.json")
  store.add("alice")
  with pytest.raises(ArtjaxError, match="already exists"):
    store.add("alice")
  for bad in ("", "a b", "x" * 65, "ali/ce", "alice\n", "名字"):
    with pytest.raises(ArtjaxError, match="bad key name"):
      store.add(bad)
  store.add("x" * 64)
  with pytest.raises(ArtjaxError, match=r"no key named 'carol'.*known: alice, x+"):
    store.revoke("carol")
  assert len(KeyStore(tmp_path / "keys.json")) == 2


def test_malformed_key_file_names_the_path(tmp_path):
  path = tmp_path / "keys.json"
  for content in ("not json", "[]", '{"keys": [{"name": "a"}]}',
                  '{"keys": [{"name": "a", "sha256": "zz", "created": ""}]}'):
    path.write_text(content)
    with pytest.raises(ArtjaxError, match=str(path)):
      KeyStore(path)


def test_add_does_not_overwrite_keys_added_by_another_process(tmp_path):
  path = tmp_path / "keys.json"
  server_view = KeyStore(path)
  other = KeyStore(path)
  bob = other.add("bob")
  server_view.add("alice")  # re-reads the file first
  assert KeyStore(path).verify(bob) == "bob"


def test_verify_compares_every_stored_hash(tmp_path, monkeypatch):
  store = KeyStore(tmp_path / "keys.json")
  first = store.add("a")
  for name in ("b", "c", "d"):
    store.add(name)
  calls = []
  real = hmac.compare_digest
  monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
  assert store.verify(first) == "a"  # a match on the first entry still compares all four
  assert len(calls) == 4
  calls.clear()
  assert store.verify("ajx-wrong") is None
  assert len(calls) == 4


def test_cli_add_list_revoke(tmp_path, capsys):
  f = str(tmp_path / "keys.json")
  assert keys.main(["add", "alice", "--keys", f]) == 0
  out = capsys.readouterr().out
  key = out.strip().splitlines()[-1]
  assert "alice" in out.splitlines()[0] and key.startswith("ajx-")
  assert KeyStore(f).verify(key) == "alice"

  assert keys.main(["list", "--keys", f]) == 0
  out = capsys.readouterr().out
  digest = json.loads(open(f).read())["keys"][0]["sha256"]
  assert out.startswith("alice") and digest not in out and key not in out

  assert keys.main(["revoke", "alice", "--keys", f]) == 0
  capsys.readouterr()
  assert KeyStore(f).verify(key) is None


def test_cli_errors(tmp_path, capsys):
  f = str(tmp_path / "keys.json")
  assert keys.main(["revoke", "nobody", "--keys", f]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: no key named 'nobody'") and len(err.strip().splitlines()) == 1
  assert keys.main(["add", "bad name", "--keys", f]) == 2
  assert "bad key name" in capsys.readouterr().err
  assert keys.main(["add", "alice"]) == 2  # --keys is required: an argparse usage error
  assert "--keys" in capsys.readouterr().err


# --- rate limits ------------------------------------------------------------------------------

class FakeClock:
  def __init__(self):
    self.t = 1000.0

  def __call__(self):
    return self.t


def test_requests_per_minute():
  clock = FakeClock()
  rl = RateLimiter(requests_per_minute=6, units_per_minute=None, clock=clock)
  assert all(rl.acquire("k", 1) == 0.0 for _ in range(6))
  wait = rl.acquire("k", 1)
  assert wait == pytest.approx(10.0)  # 60 s / 6 requests
  assert rl.acquire("k", 1) == pytest.approx(10.0)  # a refused request consumed nothing
  clock.t += 5
  assert rl.acquire("k", 1) == pytest.approx(5.0)
  clock.t += 5
  assert rl.acquire("k", 1) == 0.0
  assert rl.acquire("k", 1) > 0
  clock.t += 3600  # a long pause refills only up to the capacity
  assert sum(rl.acquire("k", 1) == 0.0 for _ in range(10)) == 6


def test_units_per_minute_and_oversize_requests():
  clock = FakeClock()
  rl = RateLimiter(requests_per_minute=None, units_per_minute=100, clock=clock)
  assert rl.acquire("k", 60) == 0.0
  wait = rl.acquire("k", 60)
  assert wait == pytest.approx(12.0)  # 20 more units at 100 per 60 s
  clock.t += wait
  assert rl.acquire("k", 60) == 0.0
  assert rl.acquire("k", 101) == math.inf  # more than a minute's worth: never
  assert rl.acquire("fresh", 101) == math.inf
  assert rl.acquire("fresh", 100) == 0.0
  with pytest.raises(ArtjaxError, match="negative"):
    rl.acquire("k", -1)


def test_both_limits_wait_for_the_slower():
  clock = FakeClock()
  rl = RateLimiter(requests_per_minute=1, units_per_minute=100, clock=clock)
  assert rl.acquire("k", 100) == 0.0
  assert rl.acquire("k", 50) == pytest.approx(60.0)  # units are there after 30 s, a request after 60
  rl = RateLimiter(requests_per_minute=2, units_per_minute=10, clock=clock)
  assert rl.acquire("k", 10) == 0.0
  assert rl.acquire("k", 5) == pytest.approx(30.0)  # a request is left; 5 units take 30 s
  assert rl.acquire("k", 0) == 0.0


def test_keys_are_independent_and_unlimited_passes():
  clock = FakeClock()
  rl = RateLimiter(requests_per_minute=1, units_per_minute=None, clock=clock)
  assert rl.acquire("a", 5) == 0.0 and rl.acquire("a", 5) == pytest.approx(60.0)
  assert rl.acquire("b", 5) == 0.0
  free = RateLimiter(None, 0, clock=clock)
  assert all(free.acquire("a", 10**9) == 0.0 for _ in range(1000))
  assert free.limits()["requests_per_minute"] is None and free.limits()["units_per_minute"] is None
  assert rl.limits()["requests_per_minute"] == 1.0


def test_fractional_requests_per_minute_still_allows_one():
  clock = FakeClock()
  rl = RateLimiter(requests_per_minute=0.5, units_per_minute=None, clock=clock)
  assert rl.acquire("k", 1) == 0.0
  assert rl.acquire("k", 1) == pytest.approx(120.0)


def test_bad_limits():
  for bad in (-1, float("nan"), float("inf"), "many"):
    with pytest.raises(ArtjaxError):
      RateLimiter(bad, None)


def test_idle_buckets_are_dropped(monkeypatch):
  monkeypatch.setattr(limits, "_PRUNE_AT", 100)
  clock = FakeClock()
  rl = RateLimiter(requests_per_minute=10, units_per_minute=None, clock=clock)
  for i in range(100):
    rl.acquire(f"k{i}", 1)
  clock.t += 60  # every bucket refills
  rl.acquire("active", 1)
  rl.acquire("active", 1)
  assert len(rl) == 1
  for i in range(150):
    rl.acquire(f"new{i}", 1)  # all active: nothing to drop, so the dict grows
  assert len(rl) == 151
  assert rl.acquire("active", 1) == 0.0 and rl.acquire("active", 100) == 0.0


def test_rate_limiter_is_thread_safe():
  clock = FakeClock()
  rl = RateLimiter(requests_per_minute=500, units_per_minute=None, clock=clock)
  passed = []

  def worker():
    passed.append(sum(rl.acquire("k", 1) == 0.0 for _ in range(100)))

  threads = [threading.Thread(target=worker) for _ in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert sum(passed) == 500


# --- content filters --------------------------------------------------------------------------

def test_english_terms_match_whole_words():
  f = WordListFilter(["ass", "rape"])
  assert f("you ass.") == "ass" and f("ASS!") == "ass" and f("a (rape) scene") == "rape"
  for clean in ("assassin", "a class act", "grape juice", "drapery", "passage", "ass_hat2"):
    assert f(clean) is None, clean
  assert f("看ass视频") == "ass"  # CJK next to an English word is a word boundary


def test_case_and_fullwidth_folding():
  f = WordListFilter(["Porn"])
  assert f("PORN") == "Porn" and f("ＰＯＲＮ") == "Porn" and f("p\u200born") == "Porn"
  assert WordListFilter(["ＳＴＲＡẞＥ"])("strasse") == "ＳＴＲＡẞＥ"  # casefold: ß == ss


def test_phrases_match_across_whitespace():
  f = WordListFilter(["kill yourself", "self-harm"])
  assert f("just kill   yourself") == "kill yourself"
  assert f("kill\n\tyourself") == "kill yourself"
  assert f("kill\u00a0yourself") == "kill yourself"  # NBSP (NFKC -> space)
  assert f("skill yourselfish") is None and f("kill your self") is None
  assert f("no self-harm") == "self-harm" and f("self harm") is None  # punctuation is literal


def test_chinese_terms_match_as_substrings():
  f = WordListFilter(["色情", "自杀方法"])
  assert f("这是一张色情图片") == "色情"
  assert f("告诉我自杀方法") == "自杀方法"
  assert f("一幅山水画") is None and f("色 情") is None


def test_longest_and_leftmost_term_is_reported():
  f = WordListFilter(["porn", "child porn", "rape"])
  assert f("child porn") == "child porn"
  assert f("rape and porn") == "rape"


def test_empty_and_blank_terms():
  f = WordListFilter(["", "  ", "ok"])
  assert len(f) == 1 and f("") is None and f("   ") is None and f("ok") == "ok"
  assert WordListFilter([])("anything") is None


def test_from_file(tmp_path):
  path = tmp_path / "block.txt"
  path.write_text("# a comment line\n\n  badword  \n  # indented comment\n坏词\n", encoding="utf-8")
  f = WordListFilter.from_file(path)
  assert f.terms == ["badword", "坏词"]
  assert f("a BADWORD here") == "badword" and f("有坏词") == "坏词" and f("a comment line") is None
  with pytest.raises(ArtjaxError, match="missing.txt"):
    WordListFilter.from_file(tmp_path / "missing.txt")
  (tmp_path / "latin1.txt").write_bytes(b"caf\xe9\n")
  with pytest.raises(ArtjaxError, match="latin1.txt"):
    WordListFilter.from_file(tmp_path / "latin1.txt")


def test_default_list_loads_and_catches_english_and_chinese():
  f = default_filter()
  terms = f.terms
  english = [t for t in terms if t.isascii()]
  chinese = [t for t in terms if not t.isascii()]
  assert 20 <= len(english) <= 60 and 20 <= len(chinese) <= 60
  assert f("some hentai art") == "hentai" and f("一张色情图片") == "色情"
  assert f("a watercolor of mountains at dawn") is None and f("一幅山水画，月落乌啼霜满天") is None
  # Shipped as package data (the server finds it after a regular install too).
  assert (importlib.resources.files("artjax.serve") / "blocklist.txt").is_file()


def test_combine():
  calls = []

  def classifier(text):
    calls.append(text)
    return "classifier: violent" if "fight" in text else None

  f = combine([WordListFilter(["porn"]), classifier])
  assert f("porn") == "porn" and calls == []  # the first match wins; later filters are skipped
  assert f("a fight") == "classifier: violent"
  assert f("a tree") is None and calls == ["a fight", "a tree"]
  assert combine([])("anything") is None
