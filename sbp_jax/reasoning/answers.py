"""Answer extraction, normalisation and majority voting for reasoning evals.

A gold answer decides how a model answer is read:
  - a single letter A-D: multiple choice; the last standalone choice letter
    ("(B)", "B)", "Answer: B", "**B**") of the answer region counts;
  - a number (int, decimal, fraction, with thousands commas, or LaTeX
    \\frac{a}{b}): numeric; compared exactly as rationals, so "0.50",
    "1/2" and "\\frac{1}{2}" are the same answer;
  - anything else: compared as lower-cased text without spaces or trailing
    punctuation.
The answer region is the last \\boxed{...} if there is one, else the text
after the last "Final Answer:" (its first number counts: a model may keep
talking after it), else the whole answer (its last number counts).
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from typing import Sequence

CHOICES = "ABCD"
_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+"
_FRAC = r"-?\\[dt]?frac\{\s*(-?\d+)\s*\}\{\s*(-?\d+)\s*\}"
_NUM_RE = re.compile(rf"{_FRAC}|(?<![\w.])(?:{_NUM})")
_MARKER = re.compile(r"final\s+answer\s*(?:is)?\s*[:：]?", re.I)
_CHOICE_RE = re.compile(r"(?<![A-Za-z])\(?([A-D])\)?(?![A-Za-z])")


def kind_of(gold: str) -> str:
  """'choice', 'numeric' or 'text': how answers to this gold are compared."""
  g = gold.strip().strip("()").strip()
  if len(g) == 1 and g.upper() in CHOICES:
    return "choice"
  return "numeric" if parse_number(gold) is not None else "text"


def parse_number(s: str) -> Fraction | None:
  """A whole string as an exact number, or None ("1,234.5", "3/4", "\\frac{3}{4}", "$-2$")."""
  s = s.strip().strip("$").strip()
  s = re.sub(r"^\\boxed\{(.*)\}$", r"\1", s).strip()
  m = re.fullmatch(_FRAC, s)
  if m:
    num, den = int(m.group(1)), int(m.group(2))
    neg = s.startswith("-")
    return None if den == 0 else (-1 if neg else 1) * Fraction(num, den)
  if not re.fullmatch(rf"(?:{_NUM})", s):
    return None
  s = s.replace(",", "").replace(" ", "")
  try:
    return Fraction(s)
  except (ValueError, ZeroDivisionError):
    return None


def _last_boxed(text: str) -> str | None:
  """Content of the last \\boxed{...}, braces balanced."""
  start = text.rfind("\\boxed{")
  if start < 0:
    return None
  i, depth = start + len("\\boxed{"), 1
  for j in range(i, len(text)):
    depth += {"{": 1, "}": -1}.get(text[j], 0)
    if depth == 0:
      return text[i:j]
  return text[i:]  # unclosed: take the rest


def answer_region(text: str) -> tuple[str, bool]:
  """(region, first_wins): where the answer is, and whether its first match counts."""
  boxed = _last_boxed(text)
  if boxed is not None:
    return boxed, False
  marks = list(_MARKER.finditer(text))
  if marks:
    return text[marks[-1].end():], True
  return text, False


def _numbers(region: str) -> list[Fraction]:
  out = []
  for m in _NUM_RE.finditer(region):
    v = parse_number(m.group(0))
    if v is not None:
      out.append(v)
  return out


def extract(text: str, kind: str) -> str | None:
  """The normalised answer in `text` for a gold of `kind`, or None if none is found.

  Numbers normalise to a canonical rational string ("1/2", "-3", "1234").
  """
  region, first = answer_region(text)
  if kind == "numeric":
    nums = _numbers(region)
    if not nums:
      return None
    v = nums[0] if first else nums[-1]
    return str(v)
  if kind == "choice":
    letters = _CHOICE_RE.findall(region)
    if not letters:
      return None
    return letters[0] if first else letters[-1]
  t = re.sub(r"\s+", "", region).strip(".,;:!").lower()
  return t or None


def normalize_gold(gold: str) -> tuple[str, str]:
  """(kind, normalised gold) for comparison with `extract` output."""
  kind = kind_of(gold)
  if kind == "numeric":
    return kind, str(parse_number(gold))
  if kind == "choice":
    return kind, gold.strip().strip("()").strip().upper()
  return kind, re.sub(r"\s+", "", gold).strip(".,;:!").lower()


def is_correct(text: str, gold: str) -> bool:
  kind, g = normalize_gold(gold)
  return extract(text, kind) == g


def majority_vote(answers: Sequence[str | None]) -> str | None:
  """The most frequent non-None answer; ties go to the one seen first, so the
  vote depends only on the order of the samples (sample index), never on hashing."""
  votes = Counter(a for a in answers if a is not None)
  if not votes:
    return None
  best = max(votes.values())
  return next(a for a in answers if a is not None and votes[a] == best)
