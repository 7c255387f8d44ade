"""seqio sources: every file type reads back its records; every kind of bad
input fails when the source is built, naming the file, line and field."""

import gzip
import json
import os

import pytest

from sbp_jax.data import sources
from sbp_jax.data.sources import DataFormatError, make_source, tf
from tests.seqio_helpers import _record_cache, write_jsonl  # noqa: F401


def _read(source, split="train"):
  ds = source.get_dataset(split=split, shuffle=False)
  return [{k: v.decode() for k, v in ex.items()} for ex in ds.as_numpy_iterator()]


def _example(**fields) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str)
                                                                else v]))
      for k, v in fields.items()})).SerializeToString()


def test_jsonl_gz_and_plain_read_back_with_extra_fields(tmp_path):
  recs = [{"id": str(i), "title": "t", "text": f"doc {i} é ✓"} for i in range(5)]
  a = write_jsonl(tmp_path / "a.jsonl.gz", recs[:3])
  b = write_jsonl(tmp_path / "b.jsonl", recs[3:])
  src = make_source({"train": [a, b]}, ("text",))
  assert sorted(r["text"] for r in _read(src)) == sorted(r["text"] for r in recs)
  assert src.num_input_examples("train") == 5


def test_pairs_and_glob(tmp_path):
  for i in range(2):
    write_jsonl(tmp_path / f"p{i}.jsonl", [{"d1": f"a{i}", "d2": f"b{i}"}])
  got = _read(make_source({"train": str(tmp_path / "p*.jsonl")}, ("d1", "d2")))
  assert sorted((r["d1"], r["d2"]) for r in got) == [("a0", "b0"), ("a1", "b1")]


def test_txt_is_one_document_per_file(tmp_path):
  (tmp_path / "x.txt").write_text("para one\n\npara two\n")
  (tmp_path / "y.txt").write_text("other")
  got = sorted(r["text"] for r in _read(make_source({"train": str(tmp_path / "*.txt")},
                                                    ("text",))))
  assert got == ["other", "para one\n\npara two\n"]


def test_tfrecord_and_array_record(tmp_path):
  from array_record.python import array_record_module
  texts = [f"record {i} ü" for i in range(4)]
  with tf.io.TFRecordWriter(str(tmp_path / "d.tfrecord")) as w:
    for t in texts:
      w.write(_example(text=t, id="x"))
  w = array_record_module.ArrayRecordWriter(str(tmp_path / "d.array_record"), "group_size:1")
  for t in texts:
    w.write(_example(text=t))
  w.close()
  for name in ("d.tfrecord", "d.array_record"):
    src = make_source({"train": str(tmp_path / name)}, ("text",))
    assert [r["text"] for r in _read(src)] == texts, name


@pytest.mark.parametrize("lines,where,field", [
    (['{"text": "ok"}', '{"text": "unterminated'], "line 2", None),         # invalid JSON
    (['{"text": "ok"}', '', '{"title": "no text"}'], "line 3", "'text'"),   # missing field
    (['{"text": 5}'], "line 1", "'text'"),                                  # wrong type
    (['[1, 2]'], "line 1", None),                                           # not an object
    (['{"text": "a\\ud800b"}'], "line 1", "'text'"),                        # lone surrogate
])
def test_malformed_jsonl_names_file_line_field(tmp_path, lines, where, field):
  p = tmp_path / "bad.jsonl"
  p.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataFormatError) as e:
    make_source({"train": str(p)}, ("text",))
  msg = str(e.value)
  assert str(p) in msg and where in msg
  if field:
    assert field in msg


def test_non_utf8_bytes_name_file_line_field(tmp_path):
  p = tmp_path / "latin1.jsonl.gz"
  with gzip.open(p, "wb") as f:
    f.write(b'{"text": "fine"}\n{"id": "2", "text": "caf\xe9"}\n')
  with pytest.raises(DataFormatError, match=r"latin1\.jsonl\.gz: line 2, field 'text'.*UTF-8"):
    make_source({"train": str(p)}, ("text",))
  t = tmp_path / "latin1.txt"
  t.write_bytes(b"ok\nstill ok\nbad \xff here")
  with pytest.raises(DataFormatError, match=r"latin1\.txt: line 3, field 'text'"):
    make_source({"train": str(t)}, ("text",))
  r = tmp_path / "bad.tfrecord"
  with tf.io.TFRecordWriter(str(r)) as w:
    w.write(_example(text="ok"))
    w.write(_example(text=b"\xc3\x28"))
  with pytest.raises(DataFormatError, match=r"bad\.tfrecord: record 2, field 'text'"):
    make_source({"train": str(r)}, ("text",))


def test_missing_field_in_tfrecord(tmp_path):
  r = tmp_path / "p.tfrecord"
  with tf.io.TFRecordWriter(str(r)) as w:
    w.write(_example(d1="a", d2="b"))
    w.write(_example(d1="a"))
  with pytest.raises(DataFormatError, match=r"p\.tfrecord: record 2: field 'd2' is missing"):
    make_source({"train": str(r)}, ("d1", "d2"))


def test_empty_and_missing_files(tmp_path):
  (tmp_path / "empty.jsonl").write_text("")
  with gzip.open(tmp_path / "empty.jsonl.gz", "wb"):
    pass
  for name in ("empty.jsonl", "empty.jsonl.gz"):
    with pytest.raises(DataFormatError, match=rf"{name}: the file holds no records"):
      make_source({"train": str(tmp_path / name)}, ("text",))
  with pytest.raises(FileNotFoundError, match=r"nope/\*\.jsonl' matches no file"):
    make_source({"train": str(tmp_path / "nope/*.jsonl")}, ("text",))
  with pytest.raises(DataFormatError, match="unknown file type"):
    (tmp_path / "x.csv").write_text("a")
    make_source({"train": str(tmp_path / "x.csv")}, ("text",))


def test_mirror_is_reused_until_the_file_changes(tmp_path):
  p = write_jsonl(tmp_path / "c.jsonl", [{"text": "a"}])
  m, n = sources.mirror(p, ("text",))
  assert n == 1 and m.startswith(sources.cache_dir())
  stamp = os.stat(m).st_mtime_ns
  assert sources.mirror(p, ("text",)) == (m, 1) and os.stat(m).st_mtime_ns == stamp
  with open(p, "a") as f:
    f.write(json.dumps({"text": "b"}) + "\n" + "{oops\n")
  with pytest.raises(DataFormatError, match="line 3"):
    make_source({"train": p}, ("text",))
  assert not [f for f in os.listdir(os.path.dirname(m)) if ".tmp" in f]  # no partial files
