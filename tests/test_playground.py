"""The playground page (GET /) in a real headless Chromium, against a real `python -m artjax.serve`.

Needs Debian's `chromium` and `chromium-driver` (skipped without them). Set ARTJAX_SCREENSHOT=1 to
save experiments/images/playground.png (the poem and image results side by side with the form).
"""

import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = pathlib.Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "experiments" / "images" / "playground.png"
WAIT_S = 60           # each browser wait
READY_S = 180         # the server's model loading and warm-up

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
  pytest.skip(f"the browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
              allow_module_level=True)
pytest.importorskip("selenium", reason="the browser test needs selenium (pip install -e '.[dev]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _status(url: str) -> int:
  try:
    with urllib.request.urlopen(url, timeout=5) as r:
      return r.status
  except urllib.error.HTTPError as e:
    return e.code
  except OSError:
    return 0


@pytest.fixture(scope="module")
def server(served_runs, tmp_path_factory):
  """(base URL, API key) of a server with the text, poetry and image runs, behind a key file."""
  from artjax.serve.keys import KeyStore

  work = tmp_path_factory.mktemp("playground_server")
  keys = work / "keys.json"
  key = KeyStore(keys).add("playground")
  port = _free_port()
  tmp = work / "tmp"
  tmp.mkdir()
  log_path = work / "server.log"
  cmd = [sys.executable, "-m", "artjax.serve", "--model", f"shakespeare={served_runs['text']}",
         "--model", f"tang={served_runs['poetry']}", "--model", f"digits={served_runs['image']}",
         "--model", f"chorale={served_runs['music']}",
         "--keys", str(keys), "--host", "127.0.0.1", "--port", str(port), "--drain-seconds", "2",
         "--warmup-sizes", "1"]
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "TMPDIR": str(tmp)})
  base = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + READY_S
    while _status(base + "/readyz") != 200:
      if proc.poll() is not None:
        pytest.fail(f"the server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
      if time.monotonic() > deadline:
        pytest.fail(f"the server was not ready within {READY_S} s:\n{log_path.read_text()[-3000:]}")
      time.sleep(0.5)
    yield base, key
  finally:
    proc.terminate()
    try:
      proc.wait(30)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
  profile = tmp_path_factory.mktemp("chromium_profile")
  tmp = tmp_path_factory.mktemp("chromium_tmp")
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={profile}", "--window-size=1100,820", "--lang=en-US"):
    options.add_argument(arg)
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  service = Service(CHROMEDRIVER, env={**os.environ, "TMPDIR": str(tmp)})
  driver = webdriver.Chrome(service=service, options=options)
  try:
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    yield driver
  finally:
    driver.quit()


def _wait(driver, condition, message):
  return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(condition, message)


def _error_text(driver) -> str:
  return driver.execute_script("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent;")


def _newest(driver):
  """The newest result block (results are shown newest first)."""
  return driver.find_element(By.CSS_SELECTOR, "#results > .result:first-child")


def _generate(driver):
  """Clicks Generate and waits for a new result block (or fails with the page's error message)."""
  before = driver.execute_script("return document.querySelector('#results > .result') || null")
  driver.find_element(By.ID, "generate").click()

  def done(d):
    if _error_text(d):
      raise AssertionError(f"the page shows an error: {_error_text(d)}")
    first = d.execute_script("return document.querySelector('#results > .result') || null")
    return first is not None and first != before

  _wait(driver, done, "no result appeared")
  return _newest(driver)


def _console_errors(driver) -> list:
  """SEVERE console entries other than the failed (4xx) fetches the tests cause on purpose."""
  return [e["message"] for e in driver.get_log("browser")
          if e.get("level") == "SEVERE" and "Failed to load resource" not in e["message"]]


@pytest.fixture(scope="module")
def page(server, browser):
  """The playground, connected with a valid key and its model list loaded."""
  base, key = server
  browser.get(base + "/")
  assert browser.title == "artjax playground"
  # No key yet: the model list call is refused and the page says why.
  _wait(browser, lambda d: "missing API key" in _error_text(d), "no 401 message without a key")
  field = browser.find_element(By.ID, "api-key")
  field.send_keys(key)
  browser.find_element(By.ID, "connect").click()
  _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option[value=digits]"), "models not listed")
  assert browser.execute_script("return sessionStorage.getItem('artjax.apiKey')") == key
  # The key survives a reload (session storage) and the models load again with it.
  browser.refresh()
  _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#model option[value=digits]"),
        "models not listed after a reload")
  assert browser.find_element(By.ID, "api-key").get_attribute("value") == key
  assert not _error_text(browser)
  ids = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#model option")]
  assert sorted(ids) == ["chorale", "digits", "shakespeare", "tang"]
  return browser


def test_image_grid(page):
  Select(page.find_element(By.ID, "model")).select_by_value("digits")
  options = page.find_element(By.ID, "options")
  # Class-conditional: a class select (the prompt) instead of the integer label field.
  classes = Select(options.find_element(By.ID, "opt-class"))
  assert [o.text for o in classes.options][1:] == [str(i) for i in range(10)]
  assert not options.find_elements(By.ID, "opt-label")
  classes.select_by_value("7")
  n = options.find_element(By.ID, "opt-n")
  n.clear()
  n.send_keys("4")
  options.find_element(By.ID, "opt-seed").send_keys("3")
  result = _generate(page)
  widths = _wait(page, lambda d: (lambda w: w if len(w) == 4 and all(x > 0 for x in w) else None)(
      d.execute_script("return [...document.querySelectorAll('#results > .result:first-child img.sample-image')]"
                       ".map(i => i.complete ? i.naturalWidth : 0)")), "4 decoded images")
  assert widths == [16] * 4
  images = result.find_elements(By.CSS_SELECTOR, "img.sample-image")
  assert all(img.value_of_css_property("image-rendering") == "pixelated" for img in images)
  assert all(int(img.get_attribute("naturalHeight")) == 16 for img in images)
  assert "seed 3" in result.find_element(By.CSS_SELECTOR, ".prov").text
  assert _console_errors(page) == []


def test_acrostic_poem(page):
  Select(page.find_element(By.ID, "model")).select_by_value("tang")
  options = page.find_element(By.ID, "options")
  form = Select(options.find_element(By.ID, "opt-form"))
  assert "五言绝句" in [o.text for o in form.options]
  form.select_by_visible_text("五言绝句")
  options.find_element(By.ID, "opt-acrostic").send_keys("春夏秋冬")
  options.find_element(By.ID, "opt-seed").send_keys("7")
  assert options.find_element(By.ID, "opt-cache").get_attribute("type") == "checkbox"
  assert options.find_element(By.ID, "opt-top_p").get_attribute("max") == "1"
  result = _generate(page)
  poem = result.find_element(By.CSS_SELECTOR, ".sample-text")
  assert poem.get_attribute("lang") == "zh"
  assert "Serif CJK" in poem.value_of_css_property("font-family")
  lines = [s for s in re.split(r"[，。\n]", poem.get_attribute("textContent")) if s.strip()]
  assert [s.strip()[0] for s in lines] == list("春夏秋冬"), lines
  assert _console_errors(page) == []
  if os.environ.get("ARTJAX_SCREENSHOT") == "1":
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.execute_script("window.scrollTo(0, 0)")
    assert page.save_screenshot(str(SCREENSHOT))


def test_music_harmonization_plays(page, tmp_path):
  """A music model: the melody goes up as a file (base64), the WAV comes back in an audio player that
  decodes it to the melody's length, the piano roll shows, and the MIDI is offered for download."""
  from serve_runs import write_midi

  melody = tmp_path / "melody.mid"
  write_midi(melody, [72, 74, 76, -1, 77, 76, 74, 72], steps_per_quarter=2, bpm=120.0)
  Select(page.find_element(By.ID, "model")).select_by_value("chorale")
  options = page.find_element(By.ID, "options")
  upload = options.find_element(By.ID, "opt-harmonize")
  assert upload.get_attribute("type") == "file"
  upload.send_keys(str(melody))
  _wait(page, lambda d: d.execute_script("return document.getElementById('opt-harmonize').files.length") == 1,
        "the melody file is not selected")
  bpm = options.find_element(By.ID, "opt-bpm")
  bpm.clear()
  bpm.send_keys("90")
  options.find_element(By.ID, "opt-seed").send_keys("5")
  time.sleep(0.5)  # the file is read as base64 in the background
  result = _generate(page)
  duration = _wait(page, lambda d: d.execute_script(
      "const a = document.querySelector('#results > .result:first-child audio.sample-audio');"
      "return a && a.readyState >= 1 && isFinite(a.duration) ? a.duration : null;"), "the WAV did not load")
  assert abs(duration - 8 * 60.0 / (90 * 2)) < 0.05, duration  # 8 steps of 8th notes at 90 bpm
  assert result.find_element(By.CSS_SELECTOR, "audio.sample-audio").get_attribute("src").startswith("data:audio/wav")
  _wait(page, lambda d: d.execute_script(
      "const i = document.querySelector('#results > .result:first-child img.sample-image');"
      "return i && i.complete && i.naturalWidth > 0"), "the piano roll did not load")
  links = {a.text for a in result.find_elements(By.CSS_SELECTOR, "a.download")}
  assert {"Download wav", "Download png", "Download mid"} <= links, links
  assert "seed 5" in result.find_element(By.CSS_SELECTOR, ".prov").text
  assert _console_errors(page) == []


def test_wrong_key_shows_the_servers_401(page):
  field = page.find_element(By.ID, "api-key")
  field.clear()
  field.send_keys("ajx-not-a-real-key")
  page.find_element(By.ID, "generate").click()
  _wait(page, lambda d: "incorrect API key" in _error_text(d), "no 401 message for a wrong key")
  assert "HTTP 401" in _error_text(page)
  assert page.find_element(By.ID, "error").is_displayed()
  assert _console_errors(page) == []
