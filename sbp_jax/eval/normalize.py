"""Answer normalisation for exact match (the SQuAD / TriviaQA convention).

Lowercase, drop punctuation (ASCII and Unicode), drop the articles a/an/the,
and collapse whitespace; a prediction matches when it equals any normalised
reference.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"‘", "’", "´", "`", "“", "”"}


def _is_punct(ch: str) -> bool:
  return ch in _PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
  text = unicodedata.normalize("NFD", text).lower()
  text = "".join(" " if _is_punct(c) else c for c in text)
  # Underscores are word characters to the regex but punctuation here.
  text = _ARTICLES.sub(" ", text.replace("_", " "))
  return " ".join(text.split())


def exact_match(prediction: str, references: Iterable[str]) -> bool:
  """An empty (normalised) prediction never matches, even a reference like "a"."""
  p = normalize_answer(prediction)
  return bool(p) and any(p == normalize_answer(r) for r in references)
