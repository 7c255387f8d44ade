"""The thesis' near-duplicate rule for training pairs (B.1.1).

Normalise (lowercase, drop punctuation and digits), tokenize with a
SentencePiece model, take every 13-token window ("shingle") of d1, and call the
pair a near-duplicate if any shingle of d1 also occurs in d2. Any tokenizer with
`encode(str) -> list[int]` works (tests use a tiny trained SentencePiece model
or the byte tokenizer).
"""

from __future__ import annotations

import re
import unicodedata

SHINGLE = 13
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
  """Lowercase; Unicode punctuation, symbols and digits become spaces; spaces collapse."""
  out = []
  for ch in text.lower():
    cat = unicodedata.category(ch)
    out.append(" " if cat[0] in "PSN" else ch)
  return _WS.sub(" ", "".join(out)).strip()


def fingerprint(text: str) -> bytes:
  """8 bytes naming a document up to normalize(): equal for copies that differ only in
  case, punctuation, digits or spacing."""
  import hashlib  # pylint: disable=g-import-not-at-top
  return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=8).digest()


def shingles(ids, n: int = SHINGLE) -> set[tuple[int, ...]]:
  """All n-token windows; a sequence shorter than n is its own single shingle."""
  ids = tuple(int(i) for i in ids)
  if not ids:
    return set()
  if len(ids) < n:
    return {ids}
  return {ids[i:i + n] for i in range(len(ids) - n + 1)}


def contains_window(seq, shingle_set: set[tuple[int, ...]], n: int = SHINGLE) -> bool:
  """True if any window of `seq` (length n, or the shorter shingles' lengths) is in the set."""
  seq = tuple(int(i) for i in seq)
  for m in {len(s) for s in shingle_set}:
    if any(seq[i:i + m] in shingle_set for i in range(len(seq) - m + 1)):
      return True
  return False


class NearDuplicateRule:
  """is_duplicate(d1, d2): any 13-token shingle of normalised d1 occurs in normalised d2."""

  def __init__(self, tokenizer, n: int = SHINGLE):
    if n < 1:
      raise ValueError(f"pair.select.shingle={n} must be >= 1.")
    self.tokenizer, self.n = tokenizer, n

  def tokens(self, text: str) -> list[int]:
    return list(self.tokenizer.encode(normalize(text)))

  def is_duplicate(self, d1: str, d2: str) -> bool:
    return contains_window(self.tokens(d2), shingles(self.tokens(d1), self.n), self.n)


def make_shingle_tokenizer(tok_cfg):
  """A tokenizer config section ({kind: 'sentencepiece' | 'bytes' | 'hf', path}) -> tokenizer;
  the thesis uses SentencePiece (e.g. data/demo_corpus/spm_bpe_4096.model)."""
  from sbp_jax.generate.text_codec import make_tokenizer  # pylint: disable=g-import-not-at-top
  return make_tokenizer(tok_cfg)
