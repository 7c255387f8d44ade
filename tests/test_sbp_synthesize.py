"""SBP synthesis: seeded shards, resume without duplicates, repetition filter."""

import glob
import hashlib
import json
import math
import os

import pytest

from sbp_jax.data import special_tokens
from sbp_jax.generate.text_codec import ByteTokenizer
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


@pytest.mark.parametrize("quota", [200, 210])
def test_each_shard_stops_at_the_document_that_fills_its_quota(tmp_path, quota):
  # Kept outputs are 20 tokens and a batch keeps ~3 of 4: a shard ends at the document that
  # reaches the quota (exactly 200 / 220 tokens), not at the end of that document's batch.
  kw = dict(KW, target_tokens=3 * quota, tokens_per_shard=quota)
  out = str(tmp_path / "q")
  syn.synthesize_to_dir(DOCS, fake_generate, out, **kw)
  rows = _read(out)
  for s in range(3):
    shard = [r for r in rows if r["id"].startswith(f"syn-{s:05d}-")]
    tokens = sum(r["num_tokens"] for r in shard)
    assert tokens - shard[-1]["num_tokens"] < quota <= tokens == 20 * math.ceil(quota / 20)
    stats = json.loads(open(syn.shard_path(out, s) + ".stats.json").read())
    assert stats["kept_tokens"] == tokens and stats["kept"] == len(shard)
    assert stats["dropped_over_quota"] > 0 or quota == 200  # the trimmed batch is counted
    assert stats["generated"] == stats["kept"] + sum(
        v for k, v in stats.items() if k.startswith("dropped_"))
  # Trimming keeps determinism: each shard is the start of what a larger quota would keep.
  big = str(tmp_path / "big")
  syn.synthesize_to_dir(DOCS, fake_generate, big, **dict(kw, target_tokens=30 * quota,
                                                         tokens_per_shard=10 * quota))
  longer = _read(big)
  for s in range(3):
    mine = [r for r in rows if r["id"].startswith(f"syn-{s:05d}-")]
    assert [r for r in longer if r["id"].startswith(f"syn-{s:05d}-")][:len(mine)] == mine


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
  assert (summary["kept"] + summary["dropped_repetitive"] + summary["dropped_over_quota"]
          == summary["generated"])
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
  # The start id training feeds before a segment's first token comes first.
  assert syn.prompt_ids(tok, "ab", 4, start=(0,)) == [0] + list(b"ab") + [ids[-1]]


def test_bad_seed_file_names_file_and_line(tmp_path):
  p = tmp_path / "d.jsonl"
  p.write_text('{"text": "a"}\n\n{"text": "b"}\n')
  docs = syn.SeedDocs(str(p))
  assert len(docs) == 2 and docs.take([1, 0]) == [{"id": "d.jsonl:3", "text": "b"},
                                                   {"id": "d.jsonl:1", "text": "a"}]
  p.write_text('{"text": "a"}\n{"title": "b"}\n')
  # Every line is checked when the index is built, before any seed is drawn.
  with pytest.raises(ValueError, match=r"d\.jsonl:2: needs a string field 'text'"):
    syn.SeedDocs(str(p))
  with pytest.raises(FileNotFoundError, match="synthesize.seed_files: .* matches no file"):
    syn.SeedDocs(str(tmp_path / "missing*.jsonl"))


class _EchoSampler:
  """Sampler's interface for sampler_generate_fn: records the prompts, returns 3 tokens."""

  def __init__(self, context):
    self.tokenizer = ByteTokenizer()
    self.cfg = type("Cfg", (), {"max_seq_len": context})
    self.prompts = []

  def generate(self, prompts, sp, seed):
    del sp, seed
    self.prompts += prompts
    done = type("Out", (), dict(tokens=[5, 6, 7], stop_len=0, text="abc",
                                finish_reason="stop_token"))
    return [done] * len(prompts)


def test_outputs_that_copy_a_seed_document_are_dropped_and_counted():
  from sbp_jax.sbp.shingles import fingerprint

  def parrot(texts, seed):  # rows 0 and 2 reproduce a seed document (case and spacing aside)
    return [syn.Sample(list(range(20 + r)), (t.upper() + "  !") if r % 2 == 0 else f"new {r} {t}",
                       "stop_token") for r, t in enumerate(texts)]

  copies = frozenset(fingerprint(d["text"]) for d in DOCS)
  recs, stats = syn.synthesize_shard(DOCS, 0, parrot, seed=0, tokens_per_shard=10_000,
                                     batch_size=4, max_batches=3, seed_copies=copies)
  assert stats["dropped_copies"] == 6 and stats["kept"] == 6 == len(recs)
  assert all(r["text"].startswith("new ") for r in recs)
  kept, stats = syn.synthesize_shard(DOCS, 0, parrot, seed=0, tokens_per_shard=10_000,
                                     batch_size=4, max_batches=3)  # the filter is off by default
  assert stats["dropped_copies"] == 0 and len(kept) == 12


def test_seed_longer_than_the_context_is_named_or_cut_and_counted():
  from sbp_jax.errors import InputError
  from sbp_jax.generate.sampler import SamplingParams
  docs = [{"id": "short", "text": "a" * 10}, {"id": "long", "text": "b" * 40}]
  sp = SamplingParams(max_new_tokens=16)
  # context 48: d1 room = 48 - 16 new - 1 separator = 31 tokens
  with pytest.raises(InputError, match=r"synthesize\.seed_files document 'long': a prompt of 41 "
                     r"tokens plus 16 new tokens exceeds the model's context of 48.*"
                     r"max_prompt_tokens to 31 .*truncate_prompts=True"):
    syn.synthesize_shard(docs, 0, syn.sampler_generate_fn(_EchoSampler(48), sp, 64), seed=0,
                         tokens_per_shard=100, batch_size=4, max_batches=1)
  fake = _EchoSampler(48)
  gen = syn.sampler_generate_fn(fake, sp, 64, truncate=True)
  recs, stats = syn.synthesize_shard(docs, 0, gen, seed=0, tokens_per_shard=100, batch_size=4,
                                     max_batches=1)
  assert max(len(p) for p in fake.prompts) + 16 == 48  # cut to fit exactly
  long_rows = [r for r in recs if r["seed_id"] == "long"]
  assert long_rows and all(r["seed_truncated_tokens"] == 40 - 31 for r in long_rows)
  assert all("seed_truncated_tokens" not in r for r in recs if r["seed_id"] == "short")
  assert stats["seeds_truncated"] == len(long_rows) > 0
  # A context with room for every seed: nothing is cut.
  _, stats = syn.synthesize_shard(docs, 0, syn.sampler_generate_fn(_EchoSampler(64), sp, 64),
                                  seed=0, tokens_per_shard=100, batch_size=4, max_batches=1)
  assert stats["seeds_truncated"] == 0


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


def _tiny_job(tmp_path, **over):
  from configs import sbp_synthesize_tiny
  c = sbp_synthesize_tiny.get_config()
  seeds = tmp_path / "seeds.jsonl"
  if not seeds.exists():
    seeds.write_text("".join(json.dumps(d) + "\n" for d in DOCS[:4]))
  c.synthesize.update(dict(seed_files=str(seeds), target_tokens=64, tokens_per_shard=32,
                           max_new_tokens=16, batch_size=4, progress=False), **over)
  return c


def test_synthesize_job_cuts_long_seeds_to_the_context_and_records_it(tmp_path):
  long_seeds = tmp_path / "long.jsonl"
  long_seeds.write_text("".join(json.dumps({"id": f"l{i}", "text": f"{i} " * 40}) + "\n"
                                for i in range(4)))
  c = _tiny_job(tmp_path, seed_files=str(long_seeds), max_prompt_tokens=256)
  c.model.max_seq_len = 64  # room for 64 - 16 - 1 = 47 seed tokens of the 80
  summary = syn.run(c, str(tmp_path / "w"))
  rows = _read(str(tmp_path / "w" / "synthetic"))
  assert rows and all(r["seed_truncated_tokens"] == 80 - 47 for r in rows)
  assert summary["seeds_truncated"] == summary["generated"] > 0
  c.synthesize.truncate_prompts = False
  from sbp_jax.errors import InputError
  with pytest.raises(InputError, match=r"synthesize\.seed_files document 'l\d': a prompt of 81 "
                     r"tokens plus 16 new tokens exceeds the model's context of 64"):
    syn.run(c, str(tmp_path / "w2"))


def test_synthesize_rerun_with_other_settings_stops_before_compute(tmp_path):
  from sbp_jax import runs
  from sbp_jax.errors import InputError
  w = str(tmp_path / "w")
  c = _tiny_job(tmp_path)
  first = syn.run(c, w)
  shards = {n: open(os.path.join(w, "synthetic", n), "rb").read()
            for n in os.listdir(os.path.join(w, "synthetic"))}
  record = open(os.path.join(w, "config.json")).read()
  for over, named in ((dict(temperature=0.5), r"synthesize\.temperature: 1\.0 -> 0\.5"),
                      (dict(max_new_tokens=8), r"synthesize\.max_new_tokens: 16 -> 8")):
    with pytest.raises(InputError, match=named + r".*new --workdir.*--overwrite"):
      syn.run(_tiny_job(tmp_path, **over), w)
  with open(tmp_path / "seeds.jsonl", "a") as f:
    f.write(json.dumps({"id": "d9", "text": "one more seed"}) + "\n")
  with pytest.raises(InputError, match=r"input synthesize\.seed_files .*seeds\.jsonl\) changed"):
    syn.run(_tiny_job(tmp_path), w)
  assert open(os.path.join(w, "config.json")).read() == record
  assert {n: open(os.path.join(w, "synthetic", n), "rb").read()
          for n in os.listdir(os.path.join(w, "synthetic"))} == shards
  with runs.overwriting(True):  # --overwrite: cleared, then recomputed from the new seeds
    again = syn.run(_tiny_job(tmp_path), w)
  assert again["this_host"]["shards_written"] == first["shards"]
  assert json.load(open(os.path.join(w, "identity-synthesize.json")))["inputs"][
      "synthesize.seed_files"]["id"]["size"] == os.path.getsize(tmp_path / "seeds.jsonl")
  # The progress bar is how, not what: the same identity, so every shard is skipped.
  assert syn.run(_tiny_job(tmp_path, progress=True), w)["this_host"]["shards_written"] == 0


def test_synthesize_outputs_from_before_identities_are_not_adopted(tmp_path):
  from sbp_jax.errors import InputError
  w = tmp_path / "w"
  (w / "synthetic").mkdir(parents=True)
  (w / "synthetic" / "synthetic-00000.jsonl").write_text('{"text": "old"}\n')
  with pytest.raises(InputError, match=r"synthetic.* written before run identities were "
                     r"recorded.*new --workdir.*--overwrite"):
    syn.run(_tiny_job(tmp_path), str(w))
  assert (w / "synthetic" / "synthetic-00000.jsonl").read_text() == '{"text": "old"}\n'


@pytest.mark.slow  # five `python -m sbp_jax.main` processes (~1-2 min on one core)
def test_kill9_at_random_moments_then_the_same_command_equals_an_uninterrupted_run(tmp_path):
  from tests import kill_resume
  seeds = tmp_path / "seeds.jsonl"
  seeds.write_text("".join(json.dumps({"id": f"d{i}", "text": f"seed {i} " * (i + 1)}) + "\n"
                           for i in range(16)))
  args = [f"--config.synthesize.seed_files={seeds}", "--config.synthesize.target_tokens=480",
          "--config.synthesize.tokens_per_shard=40", "--config.synthesize.max_new_tokens=12",
          "--config.synthesize.batch_size=4", "--config.synthesize.progress=False"]
  whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
  shards = lambda w: len(glob.glob(os.path.join(w, "synthetic", "synthetic-*.jsonl")))
  span = kill_resume.uninterrupted(kill_resume.main_cmd("sbp_synthesize_tiny.py", whole, *args),
                                   lambda: shards(whole))
  hits = kill_resume.killed_then_finished(
      kill_resume.main_cmd("sbp_synthesize_tiny.py", cut, *args), lambda: shards(cut), span,
      seed=18, kills=3)
  # At least one kill lands while shards are still being written; a later one may land
  # after the last shard, while the job writes its summary (a crash there is fine too).
  assert any(n < 12 for _, n in hits), hits
  skip = lambda rel: rel == "synthesize_summary.json"  # holds this invocation's timing
  got, want = kill_resume.files(cut, skip), kill_resume.files(whole, skip)
  assert sorted(got) == sorted(want)
  assert got == want
  assert shards(cut) == 12
