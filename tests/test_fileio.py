"""The file layer (sbp_jax/fileio.py): JSON-lines formats, globs, atomic writes, errors."""

import gzip
import json
import os

import pytest
from etils import epath

from sbp_jax import fileio

RECS = [{"id": "a", "text": "caf\u00e9 \u2014 \u65e5\u672c"}, {"id": "b", "text": "x", "n": [1, 2]}]


@pytest.mark.parametrize("name", ["r.jsonl", "r.jsonl.gz", "sub/dir/r.jsonl"])
def test_round_trip_plain_gz_and_new_dirs(tmp_path, name):
  p = str(tmp_path / name)
  assert fileio.write_jsonl(p, RECS) == 2
  assert list(fileio.read_jsonl(p, ("id", "text"))) == RECS
  raw = open(p, "rb").read()
  assert (gzip.decompress(raw) if p.endswith(".gz") else raw).decode("utf-8").count("\n") == 2
  assert sorted(os.listdir(os.path.dirname(p))) == [os.path.basename(p)]  # no temp left


def test_gz_bytes_are_reproducible(tmp_path):
  a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
  fileio.write_jsonl(a, RECS)
  fileio.write_jsonl(b, RECS)
  assert a.read_bytes() == b.read_bytes()  # no mtime or file name in the gzip header


def test_epath_and_pathlib_paths(tmp_path):
  p = epath.Path(tmp_path) / "e.jsonl"
  fileio.write_jsonl(p, RECS)
  assert [r["id"] for r in fileio.read_jsonl(p)] == ["a", "b"]
  assert [n for n, _ in fileio.iter_jsonl(tmp_path / "e.jsonl")] == [1, 2]


def test_zst(tmp_path):
  zstandard = pytest.importorskip("zstandard")
  p = tmp_path / "r.jsonl.zst"
  p.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "z1"}\n\n{"text": "z2"}\n'))
  assert [r["text"] for r in fileio.read_jsonl(p)] == ["z1", "z2"]


def test_blank_lines_are_skipped_and_counted(tmp_path):
  p = tmp_path / "b.jsonl"
  p.write_text('\n{"text": "one"}\n   \n\n{"text": "two"}')  # no final newline
  assert list(fileio.iter_jsonl(p, ("text",))) == [(2, {"text": "one"}), (5, {"text": "two"})]


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
    list(fileio.read_jsonl(p, fields, hint))


def test_invalid_utf8_and_caller_error_type(tmp_path):
  p = tmp_path / "bad.jsonl"
  p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid UTF-8 .*re-encode"):
    list(fileio.read_jsonl(p))

  class MyError(ValueError):
    pass
  with pytest.raises(MyError, match=r"bad\.jsonl:2:"):
    list(fileio.iter_jsonl(p, error=MyError))


def test_truncated_gz_and_missing_file(tmp_path):
  p = tmp_path / "t.jsonl.gz"
  fileio.write_jsonl(p, [{"text": "x" * 50, "i": i} for i in range(2000)])
  p.write_bytes(p.read_bytes()[:-200])
  with pytest.raises(ValueError, match=r"t\.jsonl\.gz: unreadable after line \d+"):
    list(fileio.read_jsonl(p))
  with pytest.raises(FileNotFoundError, match=r"nope\.jsonl does not exist"):
    list(fileio.read_jsonl(tmp_path / "nope.jsonl"))


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
  p = tmp_path / "w.jsonl"
  fileio.write_jsonl(p, RECS)
  before = p.read_bytes()

  def records():
    yield {"id": "new"}
    raise RuntimeError("generator failed")
  with pytest.raises(RuntimeError):
    fileio.write_jsonl(p, records())
  assert p.read_bytes() == before and os.listdir(tmp_path) == ["w.jsonl"]
  with pytest.raises(TypeError):  # not JSON-serializable
    fileio.write_jsonl(p, [{"x": object()}])
  assert p.read_bytes() == before and os.listdir(tmp_path) == ["w.jsonl"]


# -- paths, globs, atomic writes, the offset index --------------------------------------------

def test_glob_expand_and_find(tmp_path):
  for name in ("b.jsonl", "a.jsonl", "c.txt", "sub/d.jsonl"):
    fileio.write_text(tmp_path / name, name)
  d = str(tmp_path)
  assert fileio.glob(f"{d}/*.jsonl") == [f"{d}/a.jsonl", f"{d}/b.jsonl"]
  assert fileio.glob(f"{d}/*/d.json?") == [f"{d}/sub/d.jsonl"]
  assert fileio.glob(f"{d}/c.txt") == [f"{d}/c.txt"]  # a plain path matches itself
  assert fileio.glob(f"{d}/none*.jsonl") == [] and fileio.glob(f"{d}/none.txt") == []
  assert fileio.expand([f"{d}/c.txt", f"{d}/*.jsonl"], "k") == [
      f"{d}/c.txt", f"{d}/a.jsonl", f"{d}/b.jsonl"]  # pattern order, sorted within each
  with pytest.raises(FileNotFoundError, match=r"^data\.files: '.*none\*' matches no file; fix"):
    fileio.expand(f"{d}/none*", "data.files", "fix it")
  with pytest.raises(FileNotFoundError, match=r"^data\.files is empty"):
    fileio.expand([], "data.files")
  assert fileio.find(d, "*.jsonl") == [f"{d}/a.jsonl", f"{d}/b.jsonl", f"{d}/sub/d.jsonl"]
  assert fileio.find(f"{d}/missing", "*") == []


def test_reading_a_mistyped_path_creates_nothing(tmp_path):
  bad = tmp_path / "typo" / "dir" / "x.json"
  for read in (fileio.read_json, fileio.read_text, fileio.read_bytes, fileio.size):
    with pytest.raises(FileNotFoundError, match="typo/dir/x.json does not exist"):
      read(str(bad))
  assert os.listdir(tmp_path) == []


def test_atomic_writes_replace_whole_files(tmp_path):
  p = str(tmp_path / "new" / "r.json")
  fileio.write_json(p, {"a": "\u00e9"})
  assert fileio.read_json(p) == {"a": "\u00e9"}
  fileio.write_text(p, "x\ny\n")
  assert fileio.read_lines(p) == ["x", "y"]
  fileio.write_text(p, "x")
  fileio.write_bytes(str(tmp_path / "b.bin"), b"\0\1")
  assert fileio.read_text(p) == "x" and fileio.read_bytes(str(tmp_path / "b.bin")) == b"\0\1"
  with pytest.raises(RuntimeError):
    with fileio.atomic_open(p) as f:
      f.write("partial")
      raise RuntimeError("killed mid-write")
  assert fileio.read_text(p) == "x" and os.listdir(tmp_path / "new") == ["r.json"]
  (tmp_path / "bad.json").write_text("{1")
  with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
    fileio.read_json(str(tmp_path / "bad.json"))


@pytest.mark.parametrize("ext", ["jsonl", "jsonl.gz"])
def test_offset_index_reads_chosen_lines(tmp_path, ext):
  a, b = str(tmp_path / f"a.{ext}"), str(tmp_path / f"b.{ext}")
  fileio.write_jsonl(a, [{"i": i, "t": "caf\u00e9" * i} for i in range(5)])
  fileio.write_jsonl(b, [{"i": 5 + i} for i in range(3)])
  if ext == "jsonl":  # blank lines are not records, but keep their line numbers
    with open(b, "a") as f:
      f.write("\n\n" + json.dumps({"i": 8}) + "\n")
  index = fileio.JsonlIndex([a, b])
  assert len(index) == (9 if ext == "jsonl" else 8)
  got = index.take([7, 0, 4, 5, 0])
  assert [r["i"] for _, _, r in got] == [7, 0, 4, 5, 0]  # given order, repeats, both files
  assert [(os.path.basename(p), n) for p, n, _ in got] == [
      (f"b.{ext}", 3), (f"a.{ext}", 1), (f"a.{ext}", 5), (f"b.{ext}", 1), (f"a.{ext}", 1)]
  if ext == "jsonl":
    assert index.locate(8) == (b, 6)
  assert index.take([]) == []
  with pytest.raises(IndexError):
    index.take([len(index)])


def test_ram_filesystem_round_trip(monkeypatch):
  from tests.ramfs import use_ram  # pylint: disable=g-import-not-at-top
  root = use_ram(monkeypatch)
  fileio.write_jsonl(f"{root}/d/x.jsonl", RECS)
  fileio.write_json(f"{root}/d/y.json", [1])
  assert fileio.glob(f"{root}/d/*.jsonl") == [f"{root}/d/x.jsonl"]
  assert list(fileio.read_jsonl(f"{root}/d/x.jsonl")) == RECS
  assert [r for _, _, r in fileio.JsonlIndex([f"{root}/d/x.jsonl"]).take([1])] == RECS[1:]
  fileio.write_json(f"{root}/d/y.json", [2])  # replaces an existing file
  assert fileio.read_json(f"{root}/d/y.json") == [2]
  assert sorted(fileio.glob(f"{root}/d/*")) == [f"{root}/d/x.jsonl", f"{root}/d/y.json"]


def test_resolve_makes_local_paths_absolute_and_leaves_uris_alone(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  assert fileio.resolve("~/cache") == str(tmp_path / "cache")
  assert fileio.resolve("runs/a") == str(tmp_path / "runs" / "a")
  for uri in ("gs://bucket/~/x", "ram://a/../b"):
    assert fileio.is_remote(uri) and fileio.resolve(uri) == uri
  assert not fileio.is_remote("/tmp/a:b")
