"""SBP synthesis: seeded shards, resume without duplicates, repetition filter."""

import hashlib
import json
import os

import pytest

from sbp_jax.data import special_tokens
from sbp_jax.generate.tokenizer import ByteTokenizer
from sbp_jax.sbp import synthesize as syn

DOCS = [{"id": f"d{i}", "text": f"seed document number {i} about topic {i}"} for i in range(4)]
DOCS.append({"id": "rep", "text": "REPEAT this seed"})


def fake_generate(texts, seed):
  """A stand-in synthesizer whose output is a pure function of (seed text, sampling seed, row),
  like the real sampler: identical (doc, seed, row) would give identical documents."""
  out = []
  for row, t in enumerate(texts):
    h = hashlib.sha256(f"{t}|{seed}|{row}".encode()).hexdigest()
    if t.startswith("REPEAT"):
      toks = [1, 2, 3] * 10  # 30 tokens; every 13-shingle recurs
    else:
      toks = [int(h[k:k + 2], 16) for k in range(0, 40, 2)]  # 20 pseudo-random tokens
    out.append(syn.Sample(toks, f"out {h[:16]} of {t}", "stop_token"))
  return out


KW = dict(seed=7, target_tokens=1000, tokens_per_shard=200, batch_size=4,
          max_batches_per_shard=50, progress=False)


def _read(out_dir):
  rows = []
  for name in sorted(os.listdir(out_dir)):
    if name.endswith(".jsonl"):
      with open(os.path.join(out_dir, name)) as f:
        rows += [json.loads(line) for line in f]
  return rows


def test_resume_after_crash_writes_each_document_once(tmp_path):
  ref_dir = str(tmp_path / "ref")
  syn.synthesize_to_dir(DOCS, fake_generate, ref_dir, **KW)
  ref = _read(ref_dir)
  assert len(os.listdir(ref_dir)) == 2 * 5  # 5 shards + their stats
  assert sum(r["num_tokens"] for r in ref) >= 1000

  calls = {"n": 0}

  def crashing(texts, seed):
    calls["n"] += 1
    if calls["n"] == 10:  # in the middle of the third shard
      raise KeyboardInterrupt
    return fake_generate(texts, seed)

  out = str(tmp_path / "run")
  with pytest.raises(KeyboardInterrupt):
    syn.synthesize_to_dir(DOCS, crashing, out, **KW)
  first = sorted(n for n in os.listdir(out) if n.endswith(".jsonl"))
  assert 0 < len(first) < 5 and not any(".tmp" in n for n in first)
  before = {n: os.path.getmtime(os.path.join(out, n)) for n in first}
  totals = syn.synthesize_to_dir(DOCS, fake_generate, out, **KW)
  assert totals["shards_written"] == 5 - len(first)
  assert all(os.path.getmtime(os.path.join(out, n)) == t for n, t in before.items())
  rows = _read(out)
  texts = [r["text"] for r in rows]
  assert len(set(texts)) == len(texts)
  assert len({r["id"] for r in rows}) == len(rows)
  assert rows == ref  # the resumed run equals the uninterrupted one


def test_hosts_split_shards_without_overlap(tmp_path):
  one = str(tmp_path / "one")
  syn.synthesize_to_dir(DOCS, fake_generate, one, **KW)
  two = str(tmp_path / "two")
  for h in range(2):
    syn.synthesize_to_dir(DOCS, fake_generate, two, process_index=h, process_count=2, **KW)
  assert _read(two) == _read(one)
  assert syn.host_shards(5, 1, 2) == [1, 3]


def test_repetitive_outputs_are_dropped_and_counted(tmp_path):
  out = str(tmp_path / "s")
  syn.synthesize_to_dir(DOCS, fake_generate, out, **KW)
  rows = _read(out)
  assert rows and all(r["seed_id"] != "rep" for r in rows)
  summary = syn.summarize_dir(out)
  # The REPEAT doc is 1 of 5 seeds: about a fifth of the outputs are repetitive and dropped.
  assert 0.1 < summary["repetitive_rate"] < 0.35
  assert summary["kept"] == len(rows)
  assert summary["kept"] + summary["dropped_repetitive"] == summary["generated"]
  assert summary["kept_tokens"] == sum(r["num_tokens"] for r in rows)
  assert {r["seed_id"] for r in rows} == {"d0", "d1", "d2", "d3"}  # uniform seeds reach all


def test_seed_documents_depend_only_on_seed_and_shard():
  a = syn.shard_rng(3, 2).integers(0, 1000, 20)
  b = syn.shard_rng(3, 2).integers(0, 1000, 20)
  c = syn.shard_rng(3, 1).integers(0, 1000, 20)
  assert (a == b).all() and (a != c).any()
  seeds = {syn.batch_seed(0, s, b) for s in range(20) for b in range(20)}
  assert len(seeds) == 400


def test_prompt_is_seed_then_separator():
  tok = ByteTokenizer()
  ids = syn.prompt_ids(tok, "abcdef", max_prompt_tokens=4)
  assert ids == list(b"abcd") + [tok.token_to_id(special_tokens.DOC_SEP)]


def test_bad_seed_file_names_file_and_line(tmp_path):
  p = tmp_path / "d.jsonl"
  p.write_text('{"text": "a"}\n{"title": "b"}\n')
  with pytest.raises(ValueError, match=r"d\.jsonl:2: needs a string field 'text'"):
    syn.read_seed_docs(str(p))
  with pytest.raises(FileNotFoundError, match="matches no file"):
    syn.read_seed_docs(str(tmp_path / "missing*.jsonl"))


def test_synthesize_job_with_the_real_sampler(tmp_path):
  from configs import sbp_synthesize_tiny
  c = sbp_synthesize_tiny.get_config()
  seeds = tmp_path / "seeds.jsonl"
  seeds.write_text("".join(json.dumps(d) + "\n" for d in DOCS[:4]))
  c.synthesize.seed_files = str(seeds)
  c.synthesize.target_tokens = 64
  c.synthesize.tokens_per_shard = 32
  c.synthesize.max_new_tokens = 16
  c.synthesize.batch_size = 4
  summary = syn.run(c, str(tmp_path / "w"))
  assert summary["shards"] == 2 and summary["kept_tokens"] >= 64
  rows = _read(str(tmp_path / "w" / "synthetic"))
  assert all(r["seed_id"] in {"d0", "d1", "d2", "d3"} and 0 < r["num_tokens"] <= 16
             for r in rows)
  again = syn.run(c, str(tmp_path / "w"))
  assert again["this_host"]["shards_written"] == 0
