"""Corpus -> fixed-size document shards with global row ids (gid).

Every later stage addresses a document by gid (its row in the corpus, in file
order) and a shard by gid // shard_size, so embedding, search and selection
shards line up. Shards are JSONL (one {"gid", "id", "text"} per line), written
to a temporary name and renamed; a manifest written last marks the split done.
"""

from __future__ import annotations

import os
from typing import Iterator

from sbp_jax import fileio
from sbp_jax.fileio import iter_jsonl, read_jsonl, write_jsonl

MANIFEST = "manifest.json"


def corpus_files(files) -> list[str]:
  return fileio.expand(files, "pair.corpus", "point it at JSON-lines files with a text field "
                       "(e.g. data/demo_corpus/train.jsonl.gz)")


def iter_corpus(files, text_field: str = "text", id_field: str = "id") -> Iterator[dict]:
  """Yields {"id", "text"} per line of .jsonl / .jsonl.gz files; errors name file:line."""
  for path in corpus_files(files):
    for n, row in iter_jsonl(path, (text_field,),
                             "set pair.text_field to the field holding the document"):
      yield {"id": str(row.get(id_field, f"{os.path.basename(path)}:{n}")), "text": row[text_field]}


def check_corpus(files, text_field: str = "text", id_field: str = "id", max_docs: int = 0) -> int:
  """Reads every record the split will use, so a bad line anywhere is an error before the
  job writes anything; returns how many there are."""
  n = 0
  for _ in iter_corpus(files, text_field, id_field):
    n += 1
    if max_docs and n >= max_docs:
      break
  if n == 0:
    raise _empty(files)
  return n


def _empty(files) -> ValueError:
  return ValueError(f"pair.corpus={files!r} holds no documents; point it at JSON-lines files "
                    "with one document per line.")


def shard_path(out_dir: str, shard: int) -> str:
  return os.path.join(out_dir, f"docs-{shard:05d}.jsonl")


def split_corpus(files, out_dir: str, shard_size: int, text_field: str = "text",
                 id_field: str = "id", max_docs: int = 0) -> dict:
  """Writes docs shards once; returns the manifest {num_docs, num_shards, shard_size}."""
  man_path = os.path.join(out_dir, MANIFEST)
  if fileio.exists(man_path):
    man = fileio.read_json(man_path)
    if man["shard_size"] != shard_size:
      raise ValueError(f"{man_path}: shards were written with shard_size={man['shard_size']}, "
                       f"but pair.shard_size={shard_size}; use a new workdir or the old size.")
    return man
  buf, gid, shard = [], 0, 0
  for doc in iter_corpus(files, text_field, id_field):
    if max_docs and gid >= max_docs:
      break
    buf.append({"gid": gid, **doc})
    gid += 1
    if len(buf) == shard_size:
      write_jsonl(shard_path(out_dir, shard), buf)
      buf, shard = [], shard + 1
  if buf:
    write_jsonl(shard_path(out_dir, shard), buf)
    shard += 1
  if gid == 0:
    raise _empty(files)
  man = {"num_docs": gid, "num_shards": shard, "shard_size": shard_size}
  fileio.write_json(man_path, man)
  return man


def read_shard(out_dir: str, shard: int) -> list[dict]:
  path = shard_path(out_dir, shard)
  return list(read_jsonl(path))
