"""Reading and writing JSON-lines files (plain, .gz or .zst; local or gs://) with precise errors.

Every module reads and writes JSONL through here. Writes are deterministic
(sorted input is the caller's job; gzip carries no timestamp or file name) and
atomic (temp name, then rename): a file that exists is complete, which is what
resumable jobs test for, so readers need no tolerance for a truncated last line.
(data/sources.py keeps its own reader: it runs inside tf.data on tf.io.gfile.)
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
from typing import Iterable, Iterator

from etils import epath  # local paths and gs:// alike (pod jobs read and write buckets)


@contextlib.contextmanager
def open_file(path, text: bool = False):
  """`path` opened for reading (bytes, or UTF-8 text), decompressing .gz and .zst."""
  path = str(path)
  with epath.Path(path).open("rb") as raw:
    if path.endswith(".gz"):
      fh = gzip.GzipFile(fileobj=raw)
    elif path.endswith(".zst"):
      try:
        import zstandard  # pylint: disable=g-import-not-at-top
      except ImportError:
        raise ImportError(f"{path}: reading .zst needs the `zstandard` package "
                          "(pip install zstandard), or decompress the file first.") from None
      # BufferedReader: the zstd stream has no readline, so it cannot be iterated by line.
      fh = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    else:
      fh = raw
    with io.TextIOWrapper(fh, encoding="utf-8") if text else fh as f:
      yield f


def iter_jsonl(path, fields: tuple[str, ...] = (), hint: str = "",
               error: type[Exception] = ValueError) -> Iterator[tuple[int, dict]]:
  """(line number, object) per non-blank line. Raises `error` naming file:line on invalid
  UTF-8, invalid JSON, a line that is not an object, or one of `fields` missing or not a
  string (with `hint`, e.g. the config key that names the field, as the fix)."""
  path = str(path)
  if not epath.Path(path).exists():
    raise FileNotFoundError(f"{path} does not exist; pass a .jsonl or .jsonl.gz file.")
  n = 0
  with open_file(path) as fh:
    try:
      for n, raw in enumerate(fh, 1):
        try:
          line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          raise error(f"{path}:{n}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                      "re-encode the file as UTF-8.") from None
        if not line.strip():
          continue
        try:
          rec = json.loads(line)
        except json.JSONDecodeError as e:
          raise error(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}); "
                      "each line must be one JSON object.") from None
        if not isinstance(rec, dict):
          raise error(f"{path}:{n}: got a {type(rec).__name__}, not a JSON object; "
                      "each line must be one JSON object.")
        for f in fields:
          if not isinstance(rec.get(f), str):
            kind = type(rec[f]).__name__ if f in rec else ""
            what = f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}" if kind else "missing"
            raise error(f"{path}:{n}: needs a string field {f!r}, but it is {what}"
                        + (f" ({hint})." if hint else "."))
        yield n, rec
    except (EOFError, gzip.BadGzipFile) as e:  # truncated or corrupt gzip
      raise error(f"{path}: unreadable after line {n} ({e}); re-create the file.") from None


def read_jsonl(path, fields: tuple[str, ...] = (), hint: str = "") -> Iterator[dict]:
  """The objects of iter_jsonl, without line numbers."""
  return (rec for _, rec in iter_jsonl(path, fields, hint))


def write_jsonl(path, records: Iterable[dict]) -> int:
  """Writes records (one JSON object per line, UTF-8, non-ASCII kept) atomically to a
  local or gs:// path; gzip (without mtime/name, so bytes are reproducible) if path ends
  in .gz. On an error (also one raised by a `records` generator) no file is left behind.
  Returns the number written."""
  path = str(path)
  epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
  tmp = epath.Path(f"{path}.tmp{os.getpid()}")
  n = 0
  try:
    with tmp.open("wb") as raw:
      out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) \
          if path.endswith(".gz") else raw
      with io.TextIOWrapper(out, encoding="utf-8", newline="\n") as fh:
        for rec in records:
          fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
          n += 1
    tmp.replace(path)
  except BaseException:
    if tmp.exists():
      tmp.unlink()
    raise
  return n
