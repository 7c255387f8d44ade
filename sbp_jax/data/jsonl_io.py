"""Reading and writing JSON-lines files (plain or .gz) with precise errors.

Writes are deterministic (sorted input is the caller's job; gzip carries no
timestamp or file name) and atomic (temp name, then rename).
"""

from __future__ import annotations

import gzip
import io
import json
import os
from typing import Iterable, Iterator


def _open_text(path: str):
  raw = open(path, "rb")  # pylint: disable=consider-using-with
  if path.endswith(".gz"):
    raw = gzip.GzipFile(fileobj=raw, mode="rb")
  return raw


def read_jsonl(path: str, fields: tuple[str, ...] = ()) -> Iterator[dict]:
  """Yields one dict per non-blank line; raises ValueError naming the file,
  line and field on invalid UTF-8, invalid JSON, non-objects or a missing or
  non-string required field."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; pass a .jsonl or .jsonl.gz file.")
  with _open_text(path) as fh:
    for lineno, raw in enumerate(fh, 1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                         "re-encode the file as UTF-8.") from None
      if not line.strip():
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}); "
                         "each line must be one JSON object.") from None
      if not isinstance(rec, dict):
        raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}.")
      for f in fields:
        if not isinstance(rec.get(f), str):
          what = "missing" if f not in rec else f"a {type(rec[f]).__name__}, not a string"
          raise ValueError(f"{path}:{lineno}: field {f!r} is {what}; each record needs "
                           f"{{\"{f}\": \"...\"}}.")
      yield rec


def write_jsonl(path: str, records: Iterable[dict]) -> int:
  """Writes records (one compact JSON object per line, UTF-8) atomically;
  gzip (without mtime/name, so bytes are reproducible) if path ends in .gz.
  Returns the number written."""
  os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  n = 0
  with open(tmp, "wb") as raw:
    out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) \
        if path.endswith(".gz") else raw
    with io.TextIOWrapper(out, encoding="utf-8", newline="\n") as fh:
      for rec in records:
        fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n")
        n += 1
  os.replace(tmp, path)
  return n
