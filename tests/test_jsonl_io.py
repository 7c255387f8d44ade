"""The one JSON-lines reader/writer (sbp_jax/data/jsonl_io.py): formats, paths, errors."""

import gzip
import os

import pytest
from etils import epath

from sbp_jax.data import jsonl_io

RECS = [{"id": "a", "text": "caf\u00e9 \u2014 \u65e5\u672c"}, {"id": "b", "text": "x", "n": [1, 2]}]


@pytest.mark.parametrize("name", ["r.jsonl", "r.jsonl.gz", "sub/dir/r.jsonl"])
def test_round_trip_plain_gz_and_new_dirs(tmp_path, name):
  p = str(tmp_path / name)
  assert jsonl_io.write_jsonl(p, RECS) == 2
  assert list(jsonl_io.read_jsonl(p, ("id", "text"))) == RECS
  raw = open(p, "rb").read()
  assert (gzip.decompress(raw) if p.endswith(".gz") else raw).decode("utf-8").count("\n") == 2
  assert sorted(os.listdir(os.path.dirname(p))) == [os.path.basename(p)]  # no temp left


def test_gz_bytes_are_reproducible(tmp_path):
  a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
  jsonl_io.write_jsonl(a, RECS)
  jsonl_io.write_jsonl(b, RECS)
  assert a.read_bytes() == b.read_bytes()  # no mtime or file name in the gzip header


def test_epath_and_pathlib_paths(tmp_path):
  p = epath.Path(tmp_path) / "e.jsonl"
  jsonl_io.write_jsonl(p, RECS)
  assert [r["id"] for r in jsonl_io.read_jsonl(p)] == ["a", "b"]
  assert [n for n, _ in jsonl_io.iter_jsonl(tmp_path / "e.jsonl")] == [1, 2]


def test_zst(tmp_path):
  zstandard = pytest.importorskip("zstandard")
  p = tmp_path / "r.jsonl.zst"
  p.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "z1"}\n\n{"text": "z2"}\n'))
  assert [r["text"] for r in jsonl_io.read_jsonl(p)] == ["z1", "z2"]


def test_blank_lines_are_skipped_and_counted(tmp_path):
  p = tmp_path / "b.jsonl"
  p.write_text('\n{"text": "one"}\n   \n\n{"text": "two"}')  # no final newline
  assert list(jsonl_io.iter_jsonl(p, ("text",))) == [(2, {"text": "one"}), (5, {"text": "two"})]


@pytest.mark.parametrize("content,fields,hint,msg", [
    ('{"text": "ok"}\n{"text": "cut', (), "", r"bad\.jsonl:2: not valid JSON \(.*column"),
    ('{"text": "ok"}\n[1, 2]\n', (), "", r"bad\.jsonl:2: got a list, not a JSON object"),
    ('\n{"body": "x"}\n', ("text",), "", r"bad\.jsonl:2: needs a string field 'text', but it is "
     r"missing\.$"),
    ('{"text": 3}\n', ("text",), "set data.text_field",
     r"bad\.jsonl:1: needs a string field 'text', but it is an int \(set data\.text_field\)\.$"),
])
def test_errors_name_file_line_and_field(tmp_path, content, fields, hint, msg):
  p = tmp_path / "bad.jsonl"
  p.write_text(content)
  with pytest.raises(ValueError, match=msg):
    list(jsonl_io.read_jsonl(p, fields, hint))


def test_invalid_utf8_and_caller_error_type(tmp_path):
  p = tmp_path / "bad.jsonl"
  p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid UTF-8 .*re-encode"):
    list(jsonl_io.read_jsonl(p))

  class MyError(ValueError):
    pass
  with pytest.raises(MyError, match=r"bad\.jsonl:2:"):
    list(jsonl_io.iter_jsonl(p, error=MyError))


def test_truncated_gz_and_missing_file(tmp_path):
  p = tmp_path / "t.jsonl.gz"
  jsonl_io.write_jsonl(p, [{"text": "x" * 50, "i": i} for i in range(2000)])
  p.write_bytes(p.read_bytes()[:-200])
  with pytest.raises(ValueError, match=r"t\.jsonl\.gz: unreadable after line \d+"):
    list(jsonl_io.read_jsonl(p))
  with pytest.raises(FileNotFoundError, match=r"nope\.jsonl does not exist"):
    list(jsonl_io.read_jsonl(tmp_path / "nope.jsonl"))


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
  p = tmp_path / "w.jsonl"
  jsonl_io.write_jsonl(p, RECS)
  before = p.read_bytes()

  def records():
    yield {"id": "new"}
    raise RuntimeError("generator failed")
  with pytest.raises(RuntimeError):
    jsonl_io.write_jsonl(p, records())
  assert p.read_bytes() == before and os.listdir(tmp_path) == ["w.jsonl"]
  with pytest.raises(TypeError):  # not JSON-serializable
    jsonl_io.write_jsonl(p, [{"x": object()}])
  assert p.read_bytes() == before and os.listdir(tmp_path) == ["w.jsonl"]
