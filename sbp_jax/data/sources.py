"""seqio DataSources over local or gs:// files (read through tf.io.gfile).

Formats, picked by file name:
  *.jsonl, *.jsonl.gz    one JSON object per line; blank lines are skipped
  *.txt                  ONE DOCUMENT PER FILE (the whole file is the "text";
                         blank lines inside a file are paragraph breaks, not
                         document breaks). Only for format "text".
  *.tfrecord*            tf.train.Example protos with one bytes feature per field
  *.array_record*        ArrayRecord shards of serialized tf.train.Example
                         (what seqio.beam_utils.WriteExampleArrayRecord writes)

Every record must carry the fields of its format as UTF-8 strings: "text";
"d1" and "d2"; or "prompt" and "response".

The tf.data pipeline runs no Python: JSON lines, text and ArrayRecord files
are parsed once in Python into a GZIP TFRecord mirror (one per file, in
`cache_dir()`, named by the file's path, size and mtime, written to a temporary
name and renamed when complete, reused while the file is unchanged), and
seqio.TFExampleDataSource reads the mirrors. (A Python generator inside
tf.data can deadlock when an iterator is dropped while it is mid-call: the
destructor waits for a call that waits for the GIL.) Parsing validates: a bad
file fails when the source is built, with an error naming the file, the line
(or record) number and the field. TFRecord inputs are read directly; local
ones are validated in Python first.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import uuid
from typing import Iterator, Sequence

from sbp_jax import fileio

FIELDS = {"text": ("text",), "pairs": ("d1", "d2"), "prompt_response": ("prompt", "response")}


class DataFormatError(ValueError):
  """A data file that cannot be read as its format says."""


@functools.cache
def tf_and_seqio():
  """Imports TensorFlow, hidden from accelerators (JAX owns them), and seqio.
  Only the seqio data path imports this, so other jobs never load TF."""
  import tensorflow as tf
  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except (ValueError, RuntimeError):  # no such device type / already initialised
      pass
  import seqio
  return tf, seqio


tf, seqio = tf_and_seqio()


def file_kind(path: str) -> str:
  name = os.path.basename(path)
  if name.endswith((".jsonl", ".jsonl.gz")):
    return "jsonl"
  if name.endswith(".txt"):
    return "txt"
  if ".tfrecord" in name:
    return "tfrecord"
  if ".array_record" in name:
    return "array_record"
  raise DataFormatError(f"{path}: unknown file type; name data files *.jsonl, *.jsonl.gz, *.txt, "
                        f"*.tfrecord or *.array_record.")


def list_files(files: str | Sequence[str]) -> list[str]:
  """Expands globs (local or gs://). A pattern matching nothing is an error."""
  return fileio.expand(files, "data files", "fix the path in the data config's `files` "
                       "(a path, glob or list of them)")


def _utf8(path: str, where: str, field: str, raw: bytes) -> str:
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataFormatError(f"{path}: {where}, field {field!r}: byte {e.start} is not valid UTF-8; "
                          f"re-encode the file as UTF-8.") from None


def _check_fields(path: str, where: str, obj, fields: Sequence[str]) -> dict[str, str]:
  if not isinstance(obj, dict):
    raise DataFormatError(f"{path}: {where}: expected a JSON object with fields {list(fields)}, "
                          f"got {type(obj).__name__}.")
  out = {}
  for f in fields:
    if f not in obj:
      raise DataFormatError(f"{path}: {where}: field {f!r} is missing; every record of this format "
                            f"needs {list(fields)}.")
    if not isinstance(obj[f], str):
      raise DataFormatError(f"{path}: {where}: field {f!r} must be a string, got "
                            f"{type(obj[f]).__name__}.")
    if not _encodable(obj[f]):
      raise DataFormatError(f"{path}: {where}: field {f!r} holds an unpaired surrogate escape "
                            f"(\\ud800-\\udfff); it is not valid Unicode text.")
    out[f] = obj[f]
  return out


def _encodable(s: str) -> bool:
  try:
    s.encode("utf-8")
    return True
  except UnicodeEncodeError:
    return False


def _jsonl_records(path: str, fields: Sequence[str]) -> Iterator[dict[str, str]]:
  with tf.io.gfile.GFile(path, "rb") as raw:
    f = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
    lineno = 0
    try:
      for lineno, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          line.decode("utf-8")
          bad_byte = None
        except UnicodeDecodeError as e:
          bad_byte = e.start
        try:  # surrogateescape keeps bad bytes, so the field holding them can be named
          obj = json.loads(line.decode("utf-8", errors="surrogateescape"))
        except json.JSONDecodeError as e:
          if bad_byte is not None:
            raise DataFormatError(f"{path}: line {lineno}: byte {bad_byte} is not valid UTF-8; "
                                  f"re-encode the file as UTF-8.") from None
          raise DataFormatError(f"{path}: line {lineno}: invalid JSON ({e.msg} at column "
                                f"{e.colno}); each line must be one JSON object.") from None
        if bad_byte is not None:
          field = next((k for k, v in obj.items() if isinstance(v, str) and not _encodable(v)),
                       "?") if isinstance(obj, dict) else "?"
          raise DataFormatError(f"{path}: line {lineno}, field {field!r}: byte {bad_byte} of the "
                                f"line is not valid UTF-8; re-encode the file as UTF-8.")
        yield _check_fields(path, f"line {lineno}", obj, fields)
    except (OSError, EOFError) as e:  # truncated or corrupt gzip
      raise DataFormatError(f"{path}: unreadable after line {lineno} ({e}); re-create the file."
                            ) from None


def _txt_records(path: str, fields: Sequence[str]) -> Iterator[dict[str, str]]:
  if tuple(fields) != ("text",):
    raise DataFormatError(f"{path}: plain-text files hold format 'text' only (one document per "
                          f"file); write {list(fields)} records as JSON lines instead.")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise DataFormatError(f"{path}: line {line}, field 'text': byte "
                          f"{e.start} is not valid UTF-8; re-encode the file as UTF-8.") from None
  if text.strip():
    yield {"text": text}


def _serialized_records(path: str, kind: str) -> Iterator[bytes]:
  if kind == "tfrecord":
      yield from tf.data.TFRecordDataset(path).as_numpy_iterator()
  else:
    from array_record.python import array_record_module
    reader = array_record_module.ArrayRecordReader(path)
    try:
      for i in range(reader.num_records()):
        yield reader.read([i])[0]
    finally:
      reader.close()


def _example_records(path: str, kind: str, fields: Sequence[str]) -> Iterator[dict[str, str]]:
  n = 0
  try:
    for n, raw in enumerate(_serialized_records(path, kind), 1):
      ex = tf.train.Example.FromString(raw)
      out = {}
      for f in fields:
        feat = ex.features.feature.get(f)
        if feat is None or feat.WhichOneof("kind") is None:
          raise DataFormatError(f"{path}: record {n}: field {f!r} is missing; every record of "
                                f"this format needs {list(fields)}.")
        if feat.WhichOneof("kind") != "bytes_list" or len(feat.bytes_list.value) != 1:
          raise DataFormatError(f"{path}: record {n}: field {f!r} must hold exactly one bytes "
                                f"value (a UTF-8 string).")
        out[f] = _utf8(path, f"record {n}", f, feat.bytes_list.value[0])
      yield out
  except DataFormatError:
    raise
  except Exception as e:  # corrupt shard (DataLossError, DecodeError, ...)
    raise DataFormatError(f"{path}: record {n + 1} is unreadable ({type(e).__name__}: {e}); "
                          f"re-create the shard.") from None


def iter_records(path: str, fields: Sequence[str]) -> Iterator[dict[str, str]]:
  """Validated records of one file, as dicts of the given fields."""
  kind = file_kind(path)
  if kind == "jsonl":
    return _jsonl_records(path, fields)
  if kind == "txt":
    return _txt_records(path, fields)
  return _example_records(path, kind, fields)


def _stat(path: str) -> tuple[int, int]:
  st = tf.io.gfile.stat(path)
  return st.length, st.mtime_nsec


def file_stamps(files) -> list:
  """(path, size, mtime) of each file, to key caches that must notice edits."""
  return [(p, *_stat(p)) for p in list_files(files)]


_VALIDATED: dict[tuple, int] = {}


def count_records(path: str, fields: Sequence[str]) -> int:
  """Reads every record of a file (memoised per size/mtime); raises
  DataFormatError on the first bad one and on a file without records."""
  key = (path, *_stat(path), tuple(fields))
  if key not in _VALIDATED:
    n = sum(1 for _ in iter_records(path, fields))
    if n == 0:
      raise _empty(path)
    _VALIDATED[key] = n
  return _VALIDATED[key]


def _empty(path: str) -> DataFormatError:
  return DataFormatError(f"{path}: the file holds no records (it is empty); remove it from "
                         f"`files` or fill it.")


def cache_dir() -> str:
  """Where TFRecord mirrors go: $SBP_DATA_CACHE, else ~/.cache/sbp_jax/records."""
  return os.environ.get("SBP_DATA_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sbp_jax", "records")


def _example(rec: dict[str, str]) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode("utf-8")]))
      for k, v in rec.items()})).SerializeToString()


def mirror(path: str, fields: Sequence[str]) -> tuple[str, int]:
  """(GZIP TFRecord copy of `path` as tf.train.Examples of `fields`, records)."""
  key = hashlib.sha1(json.dumps([path, *_stat(path), list(fields)]).encode()).hexdigest()
  out = os.path.join(cache_dir(), key[:2], f"{key}.tfrecord.gz")
  meta = out + ".json"
  if fileio.exists(out):
    return out, fileio.read_json(meta)["records"]
  fileio.makedirs(os.path.dirname(out))
  tmp = f"{out}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  n = 0
  try:
    with tf.io.TFRecordWriter(tmp, options="GZIP") as w:
      for n, rec in enumerate(iter_records(path, fields), 1):
        w.write(_example(rec))
    if n == 0:
      raise _empty(path)
    fileio.write_json(meta, {"source": path, "fields": list(fields), "records": n})
    # TFRecordWriter needs a path, so the file layer's rename publishes it; last, as
    # its presence marks completion.
    fileio.rename(tmp, out)
  finally:
    fileio.remove(tmp)
  return out, n


def make_source(split_to_files: dict[str, str | Sequence[str]], fields: Sequence[str]):
  """A seqio.TFExampleDataSource yielding {field: tf.string} for each split's
  files (their mirrors, for other types than TFRecord). All files of a source
  share one type. Record counts let seqio cache small sources in memory."""
  split_paths = {s: list_files(f) for s, f in split_to_files.items()}
  kinds = {file_kind(p) for paths in split_paths.values() for p in paths}
  if len(kinds) != 1:
    raise DataFormatError(f"Files {split_to_files} mix types {sorted(kinds)}; give one entry "
                          f"per file type.")
  fields = tuple(fields)
  description = {f: tf.io.FixedLenFeature([], tf.string) for f in fields}
  if kinds == {"tfrecord"}:
    local = not any(fileio.is_remote(p) for paths in split_paths.values() for p in paths)
    counts = ({s: sum(count_records(p, fields) for p in paths)
               for s, paths in split_paths.items()} if local else None)
    return seqio.TFExampleDataSource(split_paths, description, num_input_examples=counts)
  mirrored = {s: [mirror(p, fields) for p in paths] for s, paths in split_paths.items()}
  return seqio.TFExampleDataSource(
      {s: [m for m, _ in ms] for s, ms in mirrored.items()}, description,
      reader_cls=functools.partial(tf.data.TFRecordDataset, compression_type="GZIP"),
      num_input_examples={s: sum(n for _, n in ms) for s, ms in mirrored.items()})
