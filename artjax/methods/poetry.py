"""Classical Chinese poetry: a language model whose decoding is constrained to a regulated-verse form.

The `poetry` method is the autoregressive language model (`methods.autoregressive`) of a poem corpus
(<eos> poem <eos> documents) plus three sampling options: `form` (五言/七言 绝句/律诗), `acrostic`
(藏头诗: the first character of each line) and `script` (simplified / traditional output). A form is
obeyed by construction: a mask of the tokens each position may take (hanzi in character slots, the
exact punctuation at line ends, the acrostic's characters, then <eos>) is applied to the logits in the
decode loop. This module also holds the form layouts and a checker for generated poems.
"""

import numpy as np

from artjax import options as opts
from artjax.data import text
from artjax.errors import ArtjaxError
from artjax.methods import METHODS
from artjax.methods.autoregressive import AutoRegressive

COMMA, PERIOD = "，", "。"  # full-width, as in the chinese-poetry corpus
_LINE_ENDS = COMMA + PERIOD + "？！；：,.?!;:"  # any of these closes a line when checking a poem

FORMS = {
    "五言绝句": (5, 4),
    "七言绝句": (7, 4),
    "五言律诗": (5, 8),
    "七言律诗": (7, 8),
}
_ALIASES = {
    "五言絕句": "五言绝句", "七言絕句": "七言绝句", "五言律詩": "五言律诗", "七言律詩": "七言律诗",
    "wuyan-jueju": "五言绝句", "qiyan-jueju": "七言绝句",
    "wuyan-lushi": "五言律诗", "qiyan-lushi": "七言律诗",
    "wuyan-lvshi": "五言律诗", "qiyan-lvshi": "七言律诗",  # common pinyin spelling of lü
}

# CJK unified ideographs: the main block, extension A, extensions B-F and I (with the compatibility
# supplement), G-H, and the compatibility block. Rare characters of the Tang corpus lie in B and beyond.
_HANZI_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F),
                 (0x30000, 0x323AF))


def is_hanzi(ch: str) -> bool:
  """Whether `ch` (one character) is a CJK ideograph (not punctuation, not ASCII)."""
  if len(ch) != 1:
    return False
  c = ord(ch)
  return any(lo <= c <= hi for lo, hi in _HANZI_RANGES)


def parse_form(name: str) -> tuple[int, int]:
  """(chars_per_line, num_lines) of a form named in simplified or traditional Chinese, or in pinyin."""
  key = name.strip()
  key = _ALIASES.get(key, _ALIASES.get(key.lower().replace("_", "-"), key))
  if key not in FORMS:
    accepted = list(FORMS) + [a for a in _ALIASES if not a.endswith("lvshi")]
    raise ArtjaxError(f"unknown poem form {name!r}; accepted: {', '.join(accepted)} "
                      f"('_' for '-' and any case also work)")
  return FORMS[key]


def _check_shape(chars_per_line, num_lines):
  if int(chars_per_line) <= 0 or int(num_lines) <= 0:
    raise ArtjaxError(f"a poem form needs positive chars_per_line and num_lines, "
                      f"not ({chars_per_line}, {num_lines})")


def form_layout(chars_per_line, num_lines) -> list[str]:
  """Slot kinds of the poem: per line 'char' x chars_per_line then '，' (odd lines) or '。' (even lines)."""
  _check_shape(chars_per_line, num_lines)
  layout = []
  for i in range(int(num_lines)):
    layout += ["char"] * int(chars_per_line) + [COMMA if i % 2 == 0 else PERIOD]
  return layout


def _check_acrostic(acrostic: str, num_lines):
  if acrostic and len(acrostic) != int(num_lines):
    raise ArtjaxError(f"acrostic {acrostic!r} has {len(acrostic)} characters; the form has {num_lines} lines")


def _other_scripts(ch: str) -> list[str]:
  return [c for c in (text.convert_script(ch, "simplified"), text.convert_script(ch, "traditional"))
          if c != ch and len(c) == 1]


def form_mask(tokenizer, chars_per_line, num_lines, acrostic: str = "") -> np.ndarray:
  """bool (len(layout) + 1, vocab_size): row j = tokens allowed at generated position j after the BOS.

  Character slots allow every CJK ideograph of the vocabulary, punctuation slots exactly their mark,
  the last row only eos. With `acrostic`, line i starts with acrostic[i] (or its other-script form).
  """
  layout = form_layout(chars_per_line, num_lines)
  _check_acrostic(acrostic, num_lines)
  if tokenizer.kind != "char":
    raise ArtjaxError("poem forms need a character-level tokenizer (config.data.tokenizer='char')")
  if tokenizer.eos_id is None:
    raise ArtjaxError(f"poem forms need an {text.EOS} token in the vocabulary")
  index = {c: i for i, c in enumerate(tokenizer.chars)}
  for p in (COMMA, PERIOD):
    if p not in index:
      raise ArtjaxError(f"the vocabulary lacks the punctuation {p!r} that poem lines end with")
  hanzi = np.zeros((tokenizer.vocab_size,), bool)
  hanzi[[i for c, i in index.items() if is_hanzi(c)]] = True
  if not hanzi.any():
    raise ArtjaxError("the vocabulary has no Chinese characters")
  mask = np.zeros((len(layout) + 1, tokenizer.vocab_size), bool)
  for j, kind in enumerate(layout):
    if kind == "char":
      mask[j] = hanzi
    else:
      mask[j, index[kind]] = True
  mask[-1, tokenizer.eos_id] = True
  for line, ch in enumerate(acrostic):
    found = [c for c in [ch] + _other_scripts(ch) if c in index]
    if not found:
      raise ArtjaxError(f"acrostic character {ch!r} (line {line + 1}) is not in the vocabulary, "
                        f"in either script")
    row = line * (int(chars_per_line) + 1)
    mask[row] = False
    mask[row, index[found[0]]] = True
  return mask


def check_form(poem: str, chars_per_line, num_lines, acrostic: str = "") -> list[str]:
  """Problems that keep `poem` from the form (line count, line lengths, non-hanzi, punctuation,
  acrostic); [] if it fits."""
  _check_shape(chars_per_line, num_lines)
  _check_acrostic(acrostic, num_lines)
  n, k = int(chars_per_line), int(num_lines)
  lines, cur = [], ""
  for ch in poem.strip():
    if ch in _LINE_ENDS:
      lines.append((cur, ch))
      cur = ""
    elif not ch.isspace():
      cur += ch
  if cur:
    lines.append((cur, ""))
  problems = []
  if len(lines) != k:
    problems.append(f"has {len(lines)} lines, the form has {k}")
  for i, (body, end) in enumerate(lines[:k]):
    want_end = COMMA if i % 2 == 0 else PERIOD
    if len(body) != n:
      problems.append(f"line {i + 1} {body!r} has {len(body)} characters, not {n}")
    others = [c for c in body if not is_hanzi(c)]
    if others:
      problems.append(f"line {i + 1} has non-Chinese character(s) {''.join(others)!r}")
    if end != want_end:
      problems.append(f"line {i + 1} ends with {end or 'nothing'!r}, not {want_end!r}")
    if acrostic and body and body[0] != acrostic[i] and body[0] not in _other_scripts(acrostic[i]):
      problems.append(f"line {i + 1} starts with {body[0]!r}, not the acrostic's {acrostic[i]!r}")
  return problems


_FORMS_HELP = "五言绝句 七言绝句 五言律诗 七言律诗 (or wuyan-jueju, qiyan-jueju, wuyan-lushi, qiyan-lushi)"


@METHODS.register("poetry")
class Poetry(AutoRegressive):
  """A poem language model with form, acrostic and script options (see the module docstring).

  config.data: a document corpus (e.g. `chinese_poetry`) with an <eos> special and a char tokenizer;
  `data.script` is the script the model was trained in (prompts are converted to it).
  """

  OPTIONS = AutoRegressive.OPTIONS + (
      opts.Option("form", "str", f"Poem form: {_FORMS_HELP}.", default="",
                  choices=tuple(FORMS), strict=False),
      opts.Option("acrostic", "str", "藏头诗: the first character of each line, e.g. 春夏秋冬.", default=""),
      opts.Option("script", "str", "Chinese script of the output (converted with OpenCC).", default="",
                  choices=("simplified", "traditional")),
  )
  sample_options = tuple(o.name for o in OPTIONS)

  def __init__(self, config):
    super().__init__(config)
    if self.tokenizer.eos_id is None:
      raise ArtjaxError(f"the poetry method needs a document corpus framed by {text.EOS} (config.data.name "
                        f"'chinese_poetry'); for plain text use method.name='autoregressive'")

  def _prompt_text(self, prompt: str) -> str:
    model_script = self.config.data.get("script", "")
    return text.convert_script(prompt, model_script) if model_script else prompt

  def _constraint(self, options: dict, prompt_ids: list) -> tuple:
    """The form/acrostic mask for the tokens after the prompt (a prompt is the poem's beginning: it must
    fit the form too), and (form, acrostic) as the key rows share a loop by."""
    form, acrostic = options.get("form", ""), options.get("acrostic", "")
    if not (form or acrostic):
      return None, None
    if form:
      try:
        chars, lines = parse_form(form)
      except ArtjaxError as e:
        raise opts.OptionError("form", str(e)) from None
    elif len(acrostic) in (4, 8):
      chars, lines = 5, len(acrostic)  # an acrostic alone: 五言, 绝句 for 4 characters, 律诗 for 8
    else:
      raise opts.OptionError("acrostic", f"an acrostic of {len(acrostic)} characters needs a form "
                             f"(4 lines: 绝句, 8: 律诗)")
    mask = form_mask(self.tokenizer, chars, lines, acrostic)
    for j, t in enumerate(prompt_ids):
      if j >= len(mask) - 1 or not mask[j, t]:
        raise ArtjaxError(f"the prompt does not fit the form at character {j + 1} "
                          f"({self.tokenizer.decode([t])!r})")
    return mask[len(prompt_ids):], (form, acrostic)

  def _shown(self, row: dict, text_out: str) -> str:
    """A regulated poem one couplet per line, in the asked script."""
    if row["allowed"] is not None:
      text_out = text_out.replace("。", "。\n").rstrip("\n")
    script = row["options"].get("script", "")
    return text.convert_script(text_out, script) if script else text_out
