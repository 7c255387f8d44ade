"""The file layer: every job reads and writes files through here, local or remote alike.

Paths are strings; `etils.epath` picks the backend from the prefix (local disk, or
TF's gfile for gs:// and the other URI schemes it knows), so nothing here, nor in
the callers, assumes a local disk: no os.makedirs (it would create a local `gs:/`
folder), no glob.glob (it finds nothing in a bucket).

Writes are atomic: a temporary name next to the target, then a rename. A file
that exists is complete, which is what resumable jobs test for. On gs:// the
rename is a server-side copy and delete (gfile has no atomic rename there), so no
bytes pass through the host twice and a reader still never sees a partial object.
Writes create missing parent directories; reads never create anything, so a
mistyped input path is an error naming it, not a new empty directory.

JSON-lines files may be plain, .gz or .zst. Written .gz files carry no timestamp
or name, so equal records give equal bytes. `JsonlIndex` reads chosen lines of
large JSON-lines corpora by byte offset without holding the documents in memory.
"""

from __future__ import annotations

import array
import contextlib
import fnmatch
import gzip
import io
import json
import logging
import os
import uuid
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from etils import epath

log = logging.getLogger(__name__)

_WILDCARDS = "*?["


def as_path(path) -> epath.Path:
  """`path` (a string or path) as an epath.Path on its backend, for joining and stat."""
  return epath.Path(path)


def is_remote(path) -> bool:
  """True for a URI (gs://, s3://, ram://, ...), which is never expanded or made absolute."""
  return "://" in str(path)


def resolve(path) -> str:
  """A local path with ~ expanded, made absolute; a remote URI as it is."""
  path = str(path)
  return path if is_remote(path) else os.path.abspath(os.path.expanduser(path))


def exists(path) -> bool:
  return epath.Path(path).exists()


def isdir(path) -> bool:
  return epath.Path(path).is_dir()


def makedirs(path) -> None:
  """Creates an output directory and its parents (nothing happens if it exists)."""
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def glob(pattern: str) -> list[str]:
  """Sorted matches of a glob (`*`, `?`, `[...]` within one path segment; use `find` for
  any depth); a pattern without wildcards matches itself if it exists. No match gives []
  (use `expand` where that is an error)."""
  pattern = str(pattern)
  if not any(ch in pattern for ch in _WILDCARDS):
    return [pattern] if exists(pattern) else []
  i = min(pattern.index(ch) for ch in _WILDCARDS if ch in pattern)
  root = pattern[:i].rsplit("/", 1)[0] if "/" in pattern[:i] else "."
  rel = pattern[len(root) + 1:] if root != "." else pattern
  return sorted(str(p) for p in epath.Path(root).glob(rel))


def find(root, name_pattern: str) -> list[str]:
  """Sorted files at any depth under `root` whose name matches `name_pattern`."""
  out = []
  for d, _, names in epath.Path(root).walk():
    out += [str(epath.Path(d) / n) for n in fnmatch.filter(names, name_pattern)]
  return sorted(out)


def expand(patterns: str | Sequence[str], key: str, hint: str = "") -> list[str]:
  """The matches of each pattern (a path or glob, or a list of them), in order.

  A pattern that matches nothing, or no pattern at all, raises FileNotFoundError
  naming the config `key` (and `hint`, the fix)."""
  pats = [p for p in ([patterns] if isinstance(patterns, str) else list(patterns)) if str(p)]
  fix = f"; {hint}" if hint else ""
  if not pats:
    raise FileNotFoundError(f"{key} is empty{fix}.")
  out = []
  for p in pats:
    hits = glob(p)
    if not hits:
      raise FileNotFoundError(f"{key}: {str(p)!r} matches no file{fix}.")
    out += hits
  return out


def require(path, what: str = "", hint: str = "") -> str:
  """`path` if it exists, else FileNotFoundError naming it (and what it is, and the fix)."""
  path = str(path)
  if not exists(path):
    raise FileNotFoundError(f"{what + ' ' if what else ''}{path} does not exist"
                            + (f"; {hint}." if hint else "."))
  return path


def size(path) -> int:
  """Bytes in a file."""
  return int(epath.Path(require(path)).stat().length)


def copy(src, dst) -> None:
  """Copies one file (overwriting), creating dst's directory."""
  makedirs(epath.Path(dst).parent)
  epath.Path(src).copy(dst, overwrite=True)


def rename(src, dst) -> None:
  """Moves a finished file written under a temporary name into place (overwriting)."""
  epath.Path(src).replace(dst)


def remove(path) -> None:
  """Deletes a file if it exists."""
  p = epath.Path(path)
  if p.exists():
    p.unlink()


def remove_tree(path) -> None:
  """Deletes a file, or a directory with everything under it, if it exists."""
  p = epath.Path(path)
  if p.is_dir():
    p.rmtree()
  elif p.exists():
    p.unlink()


class _Raw(io.RawIOBase):
  """A standard raw stream over a backend's binary file. TF's GFile (gs://, ram://) has
  no readable()/readinto(), so io.TextIOWrapper, gzip and numpy cannot use it as is."""

  def __init__(self, f, reading: bool):
    super().__init__()
    self._f, self._reading, self._written = f, reading, 0

  def readable(self) -> bool:
    return self._reading

  def writable(self) -> bool:
    return not self._reading

  def seekable(self) -> bool:
    return self._reading

  def readinto(self, b) -> int:
    data = self._f.read(len(b))
    b[:len(data)] = data
    return len(data)

  def write(self, b) -> int:
    self._f.write(bytes(b))
    self._written += len(b)
    return len(b)

  def seek(self, offset: int, whence: int = 0) -> int:
    self._f.seek(offset, whence)
    return self._f.tell()

  def tell(self) -> int:  # some file systems (ram://) cannot tell a write position
    return self._f.tell() if self._reading else self._written


_BUFFER = 1 << 20  # few, large calls into a remote file system


@contextlib.contextmanager
def _open_binary(path, mode: str):
  """path opened "rb" or "wb" on its backend, as a buffered standard stream."""
  with epath.Path(path).open(mode) as f:
    stream = (io.BufferedReader if mode == "rb" else io.BufferedWriter)(
        _Raw(f, mode == "rb"), _BUFFER)
    try:
      yield stream
    finally:
      stream.close()  # flushes a writer into f before the backend closes f


# -- reading -------------------------------------------------------------------------------

@contextlib.contextmanager
def open_file(path, text: bool = False, newline: str | None = None):
  """`path` opened for reading (bytes, or UTF-8 text with `newline` as in open()),
  decompressing .gz and .zst."""
  path = str(path)
  with _open_binary(require(path), "rb") as raw:
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
    with io.TextIOWrapper(fh, encoding="utf-8", newline=newline) if text else fh as f:
      yield f


def read_bytes(path) -> bytes:
  return epath.Path(require(path)).read_bytes()


def read_text(path) -> str:
  """The UTF-8 text of a file (decompressed if .gz or .zst)."""
  with open_file(path, text=True) as f:
    return f.read()


def read_lines(path) -> list[str]:
  """The lines of a text file, without their line ends."""
  return read_text(path).splitlines()


def read_json(path, what: str = "") -> Any:
  """A JSON document; invalid JSON raises ValueError naming the file."""
  try:
    return json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise ValueError(f"{what + ' ' if what else ''}{path}: not valid JSON ({e.msg} at line "
                     f"{e.lineno}, column {e.colno}); fix or re-create the file.") from None


def parse_jsonl_line(path, n: int, raw: bytes, fields: tuple[str, ...] = (), hint: str = "",
                     error: type[Exception] = ValueError) -> dict | None:
  """Line `n` of a JSON-lines file as an object (None if blank). Raises `error` naming
  file:line on invalid UTF-8, invalid JSON, a line that is not an object, or one of
  `fields` missing or not a string (with `hint`, e.g. the config key naming the field)."""
  try:
    line = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise error(f"{path}:{n}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                "re-encode the file as UTF-8.") from None
  if not line.strip():
    return None
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
  return rec


def _raw_lines(path: str, error: type[Exception] = ValueError) -> Iterator[tuple[int, bytes]]:
  """(line number, bytes) per line of a (possibly compressed) file; a truncated or corrupt
  .gz raises `error` naming the file and the last good line."""
  require(path, hint="pass a .jsonl or .jsonl.gz file")
  n = 0
  with open_file(path) as fh:
    try:
      for n, raw in enumerate(fh, 1):
        yield n, raw
    except (EOFError, gzip.BadGzipFile) as e:
      raise error(f"{path}: unreadable after line {n} ({e}); re-create the file.") from None


def iter_jsonl(path, fields: tuple[str, ...] = (), hint: str = "",
               error: type[Exception] = ValueError) -> Iterator[tuple[int, dict]]:
  """(line number, object) per non-blank line; errors as in parse_jsonl_line."""
  path = str(path)
  for n, raw in _raw_lines(path, error):
    rec = parse_jsonl_line(path, n, raw, fields, hint, error)
    if rec is not None:
      yield n, rec


def read_jsonl(path, fields: tuple[str, ...] = (), hint: str = "") -> Iterator[dict]:
  """The objects of iter_jsonl, without line numbers."""
  return (rec for _, rec in iter_jsonl(path, fields, hint))


class JsonlIndex:
  """The non-blank lines of JSON-lines files, numbered 0.. in file order, read by index.

  Building it reads each file once and keeps 12 bytes per line (byte offset and line
  number), never the documents. With `fields` (a tuple, maybe empty) that pass also
  parses every line as parse_jsonl_line does, so a bad line anywhere is an error before
  any is used. `take` seeks to the chosen lines. Seeking in a .gz or .zst file
  decompresses from its start, so a corpus read this way at scale should be stored
  uncompressed (a warning says so).
  """

  def __init__(self, files: Sequence[str], fields: tuple[str, ...] | None = None,
               hint: str = ""):
    self.files = [str(f) for f in files]
    offsets, lines, ends = [], [], []
    for path in self.files:
      if path.endswith((".gz", ".zst")):
        log.warning("%s is compressed: each random read decompresses it from the start; "
                    "store large corpora as plain .jsonl to draw from them quickly.", path)
      off, o, ln = 0, array.array("q"), array.array("i")  # 8 + 4 bytes a line while built
      for n, raw in _raw_lines(path):
        if raw.strip():
          if fields is not None:
            parse_jsonl_line(path, n, raw, fields, hint)
          o.append(off)
          ln.append(n)
        off += len(raw)
      offsets.append(np.frombuffer(o, np.int64))
      lines.append(np.frombuffer(ln, np.int32))
      ends.append(len(o))
    self._offsets = offsets
    self._lines = lines
    self._starts = np.concatenate([[0], np.cumsum(ends)]).astype(np.int64)

  def __len__(self) -> int:
    return int(self._starts[-1])

  def locate(self, i: int) -> tuple[str, int]:
    """(file, 1-based line number) of line i."""
    f = int(np.searchsorted(self._starts, i, side="right")) - 1
    return self.files[f], int(self._lines[f][i - self._starts[f]])

  def take(self, indices: Iterable[int], fields: tuple[str, ...] = (), hint: str = ""
           ) -> list[tuple[str, int, dict]]:
    """(file, line number, object) for each index, in the given order (repeats allowed).
    Each file is opened once per call and read in offset order."""
    idx = np.asarray(list(indices), np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
      raise IndexError(f"line index out of range 0..{len(self) - 1}")
    out: list = [None] * len(idx)
    which = np.searchsorted(self._starts, idx, side="right") - 1
    for f in np.unique(which):
      path = self.files[f]
      pos = np.flatnonzero(which == f)
      local = idx[pos] - self._starts[f]
      order = np.argsort(local, kind="stable")
      with open_file(path) as fh:
        for p, j in zip(pos[order], local[order]):
          fh.seek(int(self._offsets[f][j]))
          n = int(self._lines[f][j])
          out[p] = (path, n, parse_jsonl_line(path, n, fh.readline(), fields, hint))
    return out


# -- writing -------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_open(path, mode: str = "w"):
  """A file opened for writing ("w" UTF-8 text, "wb" bytes) under a temporary name that
  replaces `path` when the block ends without an error; on an error nothing is left."""
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_open mode must be 'w' or 'wb', not {mode!r}")
  path = str(path)
  target = epath.Path(path)
  makedirs(target.parent)
  # A random name: hosts of a pod may share a process id.
  tmp = epath.Path(f"{path}.tmp-{uuid.uuid4().hex[:12]}")
  try:
    with _open_binary(tmp, "wb") as raw:
      if mode == "wb":
        yield raw
      else:
        with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as fh:
          yield fh
    tmp.replace(target)
  except BaseException:
    if tmp.exists():
      tmp.unlink()
    raise


def write_bytes(path, data: bytes) -> None:
  with atomic_open(path, "wb") as f:
    f.write(data)


def write_text(path, text: str) -> None:
  with atomic_open(path) as f:
    f.write(text)


def write_json(path, obj, indent: int | None = 1, **kw) -> None:
  """obj as JSON (non-ASCII kept); kw go to json.dumps (e.g. default=str)."""
  write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, **kw) + "\n")


def write_jsonl(path, records: Iterable[dict]) -> int:
  """Writes records (one JSON object per line, UTF-8, non-ASCII kept); gzip (without
  mtime/name, so bytes are reproducible) if path ends in .gz. On an error (also one
  raised by a `records` generator) no file is left behind. Returns the number written."""
  n = 0
  with atomic_open(path, "wb") as raw:
    out = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) \
        if str(path).endswith(".gz") else raw
    with io.TextIOWrapper(out, encoding="utf-8", newline="\n") as fh:
      for rec in records:
        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
  return n
