"""Cleaning and filtering of raw pretraining documents (thesis 3.4.1).

`clean_text` repairs one document: malformed Unicode (mojibake, stray control
characters, odd line separators) through ftfy, long URLs removed, runs of
blank lines cut to one. `DocumentFilter` then drops empty documents, exact
duplicates (after cleaning) and documents longer than the token limit: 4,096
tokens by default, so that a d1 + d2 pair always fits an 8,192 context.
It counts every drop by reason for the report.
"""

from __future__ import annotations

import collections
import hashlib
import re
from typing import Callable, Iterable

import ftfy

MAX_TOKENS = 4096
MAX_URL_CHARS = 80

# Repairs only: no HTML unescaping (text may legitimately discuss "&amp;"),
# quotes, full-width forms and ligatures are left as written.
_FTFY = ftfy.TextFixerConfig(unescape_html=False, uncurl_quotes=False, fix_character_width=False,
                             fix_latin_ligatures=False, explain=False)
_URL = re.compile(r"[ \t]?(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'`]+", re.IGNORECASE)
_BLANK_RUN = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")  # 3+ line breaks, blank lines may hold spaces
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def strip_long_urls(text: str, max_url_chars: int = MAX_URL_CHARS) -> str:
  """Removes URLs longer than `max_url_chars` (with one space before them);
  short links such as https://python.org stay."""

  def drop(m: re.Match) -> str:
    url = m.group(0).rstrip(".,;:!?)]}")  # sentence punctuation is not part of the link
    if len(url.lstrip(" \t")) <= max_url_chars:
      return m.group(0)
    return m.group(0)[len(url):]

  return _URL.sub(drop, text)


def normalize_line_breaks(text: str) -> str:
  """Cuts every run of three or more line breaks (blank lines may contain
  spaces) down to one blank line; strips spaces before line ends."""
  text = _TRAILING_SPACE.sub("\n", text)
  return _BLANK_RUN.sub("\n\n", text)


def clean_text(text: str, max_url_chars: int = MAX_URL_CHARS) -> str:
  """The cleaned document (an empty string if nothing of substance is left)."""
  text = ftfy.fix_text(text, _FTFY)  # also turns \r\n and \u2028 into \n
  text = strip_long_urls(text, max_url_chars)
  text = normalize_line_breaks(text)
  if not text.strip():
    return ""
  return re.sub(r"^(?:[ \t]*\n)+", "", text).rstrip()  # keeps the first line's indentation


def token_length_of(vocab) -> Callable[[str], int]:
  """A token counter from a seqio vocabulary (or anything with encode)."""
  return lambda text: len(vocab.encode(text))


class DocumentFilter:
  """Cleans and filters a stream of `{"text": ...}` records (other fields pass
  through). Call it on each record: it returns the cleaned record or None.
  `report()` gives the counts kept and dropped per reason."""

  REASONS = ("empty", "duplicate", "too_long")

  def __init__(self, token_length: Callable[[str], int] | None, *, max_tokens: int = MAX_TOKENS,
               max_url_chars: int = MAX_URL_CHARS, text_field: str = "text"):
    """`token_length=None` disables the length filter (say so explicitly)."""
    self.token_length = token_length
    self.max_tokens = max_tokens
    self.max_url_chars = max_url_chars
    self.text_field = text_field
    self._seen: set[bytes] = set()
    self._counts = collections.Counter()

  def __call__(self, doc: dict) -> dict | None:
    self._counts["input"] += 1
    text = clean_text(doc[self.text_field], self.max_url_chars)
    if text != doc[self.text_field]:
      self._counts["modified"] += 1
    reason = None
    if not text:
      reason = "empty"
    else:
      digest = hashlib.sha256(text.encode("utf-8")).digest()
      if digest in self._seen:
        reason = "duplicate"
      else:
        self._seen.add(digest)
        if self.token_length is not None and self.token_length(text) > self.max_tokens:
          reason = "too_long"
    if reason:
      self._counts[f"dropped_{reason}"] += 1
      return None
    self._counts["kept"] += 1
    return {**doc, self.text_field: text}

  def report(self) -> dict:
    c = self._counts
    return {"input": c["input"], "kept": c["kept"], "modified_by_cleaning": c["modified"],
            "dropped": {r: c[f"dropped_{r}"] for r in self.REASONS},
            "max_tokens": self.max_tokens if self.token_length is not None else None,
            "max_url_chars": self.max_url_chars}


def filter_documents(docs: Iterable[dict], token_length: Callable[[str], int] | None,
                     **kwargs) -> tuple[list[dict], dict]:
  """Cleans and filters `docs`; returns (kept docs in input order, report)."""
  f = DocumentFilter(token_length, **kwargs)
  kept = [d for d in map(f, docs) if d is not None]
  return kept, f.report()
