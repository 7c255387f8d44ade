"""SBP pairing: sharded + salted ScaNN search, merge, selection rules, the job, Beam, resume."""

import gzip
import json
import logging
import os
import random

import ml_collections
import numpy as np
import pytest

from sbp_jax.generate.text_codec import ByteTokenizer
from sbp_jax.sbp import shingles
from sbp_jax.sbp.pairing import select as pairs
from sbp_jax.sbp.pairing import search

TOPICS = {
    "astronomy": "star galaxy telescope orbit planet comet nebula supernova astronomer moon",
    "cooking": "recipe oven flour butter sauce garlic simmer bake onion pepper",
    "football": "goal striker referee league stadium penalty midfielder coach match season",
    "finance": "stock bond interest inflation bank investor market dividend loan currency",
    "medicine": "patient doctor vaccine disease symptom hospital surgery therapy virus diagnosis",
    "music": "guitar melody concert orchestra chord singer album rhythm piano composer",
}
TEMPLATES = ["The {} was studied alongside the {} by experts in {}.",
             "People in {} often compare a {} with a {}.",
             "A report from {} mentions the {} and then the {}.",
             "Without a {} the {} would look different, said a writer from {}.",
             "Historians wrote that the {} changed how {} sees the {}."]
PLACES = "Paris Lagos Lima Oslo Delhi Quito Perth Cairo Seoul Dakar Riga Hanoi".split()


def _doc(rng, topic):
  w = TOPICS[topic].split()
  sents = []
  for _ in range(5):
    t = rng.choice(TEMPLATES)
    fill = [rng.choice(w) if "{}" in t else None for _ in range(3)]
    fill[rng.randrange(3)] = rng.choice(PLACES)
    sents.append(t.format(*fill))
  return " ".join(sents)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Topic documents, plus a near-copy of doc 0 (case, punctuation and digits changed)."""
  rng = random.Random(0)
  rows = [{"id": f"d{i}", "title": t, "text": _doc(rng, t)}
          for i, t in enumerate(list(TOPICS) * 12)]
  near = rows[0]["text"].upper().replace(".", "!") + " Updated 2024."
  rows.append({"id": "near_copy_of_d0", "title": "astronomy", "text": near})
  d = tmp_path_factory.mktemp("corpus")
  path = d / "c.jsonl.gz"
  with gzip.open(path, "wt") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  return str(path), rows


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory, corpus):
  from sbp_jax.data.tokenizer import train_sentencepiece
  prefix = str(tmp_path_factory.mktemp("spm") / "tiny")
  return train_sentencepiece([shingles.normalize(r["text"]) for r in corpus[1]], prefix, 400)


# -- search ---------------------------------------------------------------------------------

def _shards(x, n):
  gids = np.arange(len(x))
  return [(x[i::n], gids[i::n]) for i in range(n)]


def _exact_without_self(x, k):
  idx, _ = search.exact_topk(x, x, k + 1)
  return np.asarray([[j for j in row if j != i][:k] for i, row in enumerate(idx)])


def _gather(results, n, k, size):
  out = np.empty((size, k), np.int64)
  for q, (g, _, _) in enumerate(results):
    out[q::n] = g
  return out


def test_sharded_salted_search_recall():
  x = search.clustered_unit_vectors(4000, 64, 40, spread=1.2, seed=0)
  sc = search.SearchConfig(k=10, scoring="ah", min_tree_size=500, leaves_to_search=16)
  res = search.search_all(_shards(x, 4), _shards(x, 4), sc, num_salts=2)
  assert sc.leaves(1000)[0] == 32  # sqrt(N) leaves per value shard
  got, truth = _gather(res, 4, 10, len(x)), _exact_without_self(x, 10)
  rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
  assert rec >= 0.95, rec
  assert sum(r[2] for r in res) >= 0.99 * len(x)  # self-matches found and dropped
  assert not (got == np.arange(len(x))[:, None]).any()


def test_merged_topk_equal_across_value_shard_counts():
  x = search.clustered_unit_vectors(1200, 32, 12, seed=1)
  sc = search.SearchConfig(k=15, scoring="float", min_tree_size=10**9)  # exact scans
  one = search.search_all(_shards(x, 3), _shards(x, 1), sc, num_salts=1)
  four = search.search_all(_shards(x, 3), _shards(x, 4), sc, num_salts=3)
  for (g1, s1, n1), (g4, s4, n4) in zip(one, four):
    np.testing.assert_array_equal(g1, g4)
    np.testing.assert_allclose(s1, s4, atol=1e-6)
    assert n1 == n4
  # Against brute force: the same neighbours, up to the order of float32 near-ties (the
  # reference sums in another order, so two neighbours within ~1e-7 may swap places).
  got, want = _gather(one, 3, 15, len(x)), _exact_without_self(x, 15)
  x64 = x.astype(np.float64)
  sims = lambda ids: np.einsum("qd,qkd->qk", x64, x64[ids])
  np.testing.assert_allclose(sims(got), sims(want), atol=1e-6)
  assert (got == want).mean() > 0.999


def test_merge_drops_self_and_breaks_ties_by_gid():
  parts = [(np.array([[7, 3, -1]]), np.array([[0.9, 0.8, -np.inf]], np.float32)),
           (np.array([[2, 5]]), np.array([[0.8, 0.95]], np.float32))]
  g, s, self_hits = search.merge_topk(parts, 3, np.array([5]))
  assert g.tolist() == [[7, 2, 3]] and self_hits == 1
  np.testing.assert_allclose(s, [[0.9, 0.8, 0.8]])


# -- selection ------------------------------------------------------------------------------

def test_threshold_and_cap():
  rng = np.random.default_rng(0)
  q = np.arange(20)
  nbr = np.stack([rng.permutation(np.arange(20, 60))[:12] for _ in q])
  scores = -np.sort(-rng.uniform(0.3, 1.0, (20, 12)), axis=1).astype(np.float32)
  letters = list("abcdefghijklmnopqrstuvwxyz")
  docs = {i: {"id": f"d{i}", "text": "".join(rng.choice(letters, 80))} for i in range(60)}
  docs[nbr[3][0]] = {"id": "copy", "text": docs[3]["text"][:40] + " tail"}  # near-copy of d3
  stats = pairs.new_stats(40)
  cands = pairs.above_alpha(q, nbr, scores, 0.7, stats)
  rule = shingles.NearDuplicateRule(ByteTokenizer(), n=13)
  kept = {d1: pairs.select_for_d1(docs[d1], c, docs, rule, 3, stats) for d1, c in cands.items()}
  n_above = int((scores > 0.7).sum())
  assert stats["dropped"]["below_alpha"] == 20 * 12 - n_above
  assert stats["dropped"]["near_duplicate"] == 1
  for d1, recs in kept.items():
    above = [f"d{g}" for g, s in zip(nbr[d1], scores[d1]) if s > 0.7 and docs[g]["id"] != "copy"]
    # The cap keeps the most similar neighbours.
    assert [r["d2_id"] for r in recs] == above[:3]
    assert all(r["similarity"] > 0.7 for r in recs)
  assert stats["kept"] + stats["dropped"]["cap"] + stats["dropped"]["near_duplicate"] == n_above
  assert stats["kept"] == sum(map(len, kept.values())) and stats["dropped"]["cap"] > 0
  assert sum(stats["histogram"]) == 240


def test_shingle_rule_drops_near_copy_keeps_related(corpus, spm_model):
  rows = corpus[1]
  tok = shingles.make_shingle_tokenizer(ml_collections.ConfigDict(
      {"kind": "sentencepiece", "path": spm_model}))
  rule = shingles.NearDuplicateRule(tok)
  d0, near = rows[0]["text"], rows[-1]["text"]
  related = rows[6]["text"]  # same topic, other sentences
  assert rows[6]["title"] == rows[0]["title"]
  assert shingles.normalize("It's 3 o'clock, Dr. Who!") == "it s o clock dr who"
  assert rule.is_duplicate(d0, near)
  assert not rule.is_duplicate(d0, related)
  # A document that quotes a 13-token stretch of d1 is a near-duplicate too.
  quote = " ".join(d0.split()[:20])
  assert rule.is_duplicate(d0, "Unrelated opening words here. " + quote + " and more.")


# -- the job ----------------------------------------------------------------------------------

def _config(corpus_path, spm_model, **search_kw):
  from configs import sbp_pair_demo
  c = sbp_pair_demo.get_config()
  c.pair.corpus = corpus_path
  c.pair.shard_size = 20
  c.pair.embedder.batch_size = 16
  c.pair.search.k = 8
  c.pair.search.update(search_kw)
  c.pair.select.alpha = 0.5
  c.pair.select.cap = 4
  c.pair.select.tokenizer = dict(kind="sentencepiece", path=spm_model)
  c.pair.random_pairs = 2000
  return c


def _read_pairs(workdir):
  d = os.path.join(workdir, "pairs")
  recs = []
  for f in sorted(os.listdir(d)):
    if f.startswith("pairs-"):
      recs += [json.loads(line) for line in open(os.path.join(d, f))]
  return recs


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, corpus, spm_model):
  from sbp_jax.sbp import pair as job
  work = str(tmp_path_factory.mktemp("local"))
  stats = job.run_local(_config(corpus[0], spm_model), work)
  return work, stats


def test_job_pairs_and_stats(local_run, corpus):
  work, stats = local_run
  rows = corpus[1]
  by_id = {r["id"]: r for r in rows}
  recs = _read_pairs(work)
  assert recs and stats["kept"] == len(recs)
  assert all(r["similarity"] > 0.5 and r["d1_id"] != r["d2_id"] for r in recs)
  assert all(by_id[r["d1_id"]]["text"] == r["d1"] and by_id[r["d2_id"]]["text"] == r["d2"]
             for r in recs)
  per_d1 = {}
  for r in recs:
    per_d1[r["d1_id"]] = per_d1.get(r["d1_id"], 0) + 1
  assert max(per_d1.values()) <= 4
  # Same-topic pairs dominate; the near-copy of d0 never pairs with d0.
  assert np.mean([by_id[r["d1_id"]]["title"] == by_id[r["d2_id"]]["title"] for r in recs]) > 0.9
  assert not any({r["d1_id"], r["d2_id"]} == {"d0", "near_copy_of_d0"} for r in recs)
  assert stats["dropped"]["near_duplicate"] >= 2  # both directions
  assert stats["dropped"]["self_match"] == len(rows)
  assert stats["queries"] == len(rows) and stats["neighbours"] == 8 * len(rows)
  assert stats["mean_similarity_kept"] > stats["mean_similarity_random"] + 0.2
  on_disk = json.load(open(os.path.join(work, "stats.json")))
  assert on_disk["kept"] == len(recs) and sum(on_disk["histogram"]["counts"]) == 8 * len(rows)


def test_interrupted_run_resumes_without_duplicates(local_run, corpus, spm_model, tmp_path):
  from sbp_jax.sbp import pair as job
  work, _ = local_run
  # Reuse the finished embeddings; drop neighbours and pairs so search + selection rerun.
  import shutil
  shutil.copytree(os.path.join(work, "docs"), tmp_path / "docs")
  shutil.copytree(os.path.join(work, "embeddings"), tmp_path / "embeddings")
  c = _config(corpus[0], spm_model)
  with pytest.raises(InterruptedError):
    job.run_local(c, str(tmp_path), stop_after_shards=2)
  done = sorted(f for f in os.listdir(tmp_path / "pairs") if f.startswith("stats-"))
  assert done == ["stats-00000.json", "stats-00001.json"]
  mtime = os.path.getmtime(tmp_path / "pairs" / "pairs-00000.jsonl")
  stats = job.run_local(c, str(tmp_path))
  assert os.path.getmtime(tmp_path / "pairs" / "pairs-00000.jsonl") == mtime  # skipped
  key = lambda r: (r["d1_id"], r["d2_id"])
  resumed, full = _read_pairs(str(tmp_path)), _read_pairs(work)
  assert len(resumed) == len({key(r) for r in resumed})  # no duplicates
  assert sorted(map(key, resumed)) == sorted(map(key, full))  # nothing missing
  assert stats["kept"] == len(full)


def test_fewer_doc_shards_than_value_shards(corpus, spm_model, tmp_path, caplog):
  """One docs shard with 4 value shards asked for: the job searches 1 value shard, says so,
  and keeps the pairs of the 4-docs-shard x 2-value-shard layout. Exact scoring and the
  same embeddings in both, so only the layout differs."""
  from sbp_jax.sbp.pairing import embed
  from sbp_jax.sbp import pair as job
  from sbp_jax.sbp.pairing import stages
  normal = str(tmp_path / "normal")
  want = job.run_local(_config(corpus[0], spm_model, scoring="float", num_value_shards=2),
                       normal)
  one = _config(corpus[0], spm_model, scoring="float", num_value_shards=4)
  one.pair.shard_size = 100  # the whole corpus in one docs shard
  lay = stages.Layout(str(tmp_path / "one"))
  assert stages.split(one.pair, lay)["num_shards"] == 1
  parts = [embed.read_embedding_shard(stages.Layout(normal).emb_file(s)) for s in range(4)]
  embed.write_embedding_shard(lay.emb_file(0), *(np.concatenate(x) for x in zip(*parts)))
  with caplog.at_level(logging.WARNING, logger="sbp_jax.sbp.pairing.stages"):
    got = job.run_local(one, lay.workdir)
  assert "num_value_shards=4 but the corpus has 1 docs shard" in caplog.text
  assert os.listdir(lay.nbr) == ["nbr-q00000-v000.npz"]
  a, b = (sorted((r["d1_id"], r["d2_id"], r["similarity"]) for r in _read_pairs(w))
          for w in (lay.workdir, normal))
  assert [r[:2] for r in a] == [r[:2] for r in b]
  # ScaNN's float32 dot products may differ in the last bit with the shard size.
  np.testing.assert_allclose([r[2] for r in a], [r[2] for r in b], atol=2e-6)
  for k in ("queries", "neighbours", "kept", "dropped"):
    assert got[k] == want[k], k
  assert got["kept"] > 0


def test_bad_corpus_line_is_named(tmp_path):
  from sbp_jax.sbp.pairing import docs
  p = tmp_path / "bad.jsonl"
  p.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "body": "no text"}\n')
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: needs a string field 'text'"):
    docs.split_corpus(str(p), str(tmp_path / "out"), 10)
  with pytest.raises(FileNotFoundError, match="matches no file"):
    docs.split_corpus(str(tmp_path / "missing*.jsonl"), str(tmp_path / "out"), 10)


@pytest.mark.slow  # two Beam worker processes each load JAX and MiniLM (~1-2 min)
def test_beam_pipeline_equals_single_process(local_run, corpus, spm_model, tmp_path):
  from sbp_jax.sbp.pairing import beam as beam_pipeline
  work, stats = local_run
  c = _config(corpus[0], spm_model)
  c.pair.runner = "beam"
  beam_stats = beam_pipeline.run_beam(c, str(tmp_path))
  key = lambda r: (r["d1_id"], r["d2_id"], r["similarity"])
  assert sorted(map(key, _read_pairs(str(tmp_path)))) == sorted(map(key, _read_pairs(work)))
  assert beam_stats["dropped"] == stats["dropped"] and beam_stats["kept"] == stats["kept"]
  np.testing.assert_allclose(beam_stats["mean_similarity_random"],
                             stats["mean_similarity_random"], atol=1e-6)


@pytest.mark.slow  # two Beam worker processes each load JAX and MiniLM (~1-2 min)
def test_beam_pipeline_with_fewer_doc_shards_than_value_shards(corpus, spm_model, tmp_path):
  from sbp_jax.sbp.pairing import beam as beam_pipeline
  from sbp_jax.sbp import pair as job
  c = _config(corpus[0], spm_model, num_value_shards=4)
  c.pair.shard_size = 100  # one docs shard
  stats = job.run_local(c, str(tmp_path / "local"))
  c.pair.runner = "beam"
  beam_stats = beam_pipeline.run_beam(c, str(tmp_path / "beam"))
  assert os.listdir(tmp_path / "beam" / "neighbors") == ["nbr-q00000-v000.npz"]
  key = lambda r: (r["d1_id"], r["d2_id"], r["similarity"])
  assert sorted(map(key, _read_pairs(str(tmp_path / "beam")))) == sorted(
      map(key, _read_pairs(str(tmp_path / "local"))))
  assert beam_stats["kept"] == stats["kept"] > 0 and beam_stats["dropped"] == stats["dropped"]


def test_pair_rerun_with_other_settings_stops_before_compute(local_run, corpus, spm_model,
                                                             tmp_path):
  import shutil
  from sbp_jax import runs
  from sbp_jax.errors import InputError
  from sbp_jax.sbp import pair as job
  work, stats = local_run
  w = str(tmp_path / "w")
  shutil.copytree(work, w)  # outputs from before the job recorded its identity
  with pytest.raises(InputError, match=r"pair outputs \(docs, embeddings, neighbors, pairs, "
                     r"stats\.json\) written before run identities.*--overwrite"):
    job.run(_config(corpus[0], spm_model), w)
  shutil.rmtree(w)
  c = _config(corpus[0], spm_model)
  assert job.run(c, w)["kept"] == stats["kept"]
  before = {f: open(os.path.join(w, "pairs", f), "rb").read()
            for f in os.listdir(os.path.join(w, "pairs"))}
  c2 = _config(corpus[0], spm_model)
  c2.pair.select.alpha = 0.7
  with pytest.raises(InputError, match=r"pair\.select\.alpha: 0\.5 -> 0\.7.*new --workdir"):
    job.run(c2, w)
  beam = _config(corpus[0], spm_model)
  beam.pair.runner = "beam"  # which driver runs the stages is not part of the identity
  assert (runs.identity("pair", beam, job.identity_keys(beam), ignore=job.HOW) ==
          runs.identity("pair", c, job.identity_keys(c), ignore=job.HOW))
  c.pair.beam_options = ("--runner=DirectRunner",)
  job.run(c, w)  # the same identity: every stage skips its finished shards
  assert {f: open(os.path.join(w, "pairs", f), "rb").read()
          for f in os.listdir(os.path.join(w, "pairs"))} == before
  with runs.overwriting(True):  # --overwrite: cleared, then recomputed with alpha 0.7
    kept = job.run(c2, w)["kept"]
  recs = _read_pairs(w)
  assert len(recs) == kept and all(r["similarity"] > 0.7 for r in recs)
  assert json.load(open(os.path.join(w, "identity-pair.json")))["config"][
      "pair.select.alpha"] == 0.7


@pytest.mark.slow  # five `python -m sbp_jax.main` processes, each loading MiniLM (~2 min)
def test_kill9_at_random_moments_then_the_same_command_equals_an_uninterrupted_run(
    corpus, spm_model, tmp_path):
  from tests import kill_resume
  args = [f"--config.pair.corpus={corpus[0]}", "--config.pair.shard_size=10",
          "--config.pair.embedder.batch_size=8", "--config.pair.search.k=8",
          "--config.pair.select.alpha=0.5", "--config.pair.select.cap=4",
          f"--config.pair.select.tokenizer.path={spm_model}", "--config.pair.random_pairs=2000"]
  whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
  written = lambda w: sum(len(fs) for _, _, fs in os.walk(w)) - 2  # minus identity, config
  span = kill_resume.uninterrupted(kill_resume.main_cmd("sbp_pair_demo.py", whole, *args),
                                   lambda: written(whole))
  hits = kill_resume.killed_then_finished(
      kill_resume.main_cmd("sbp_pair_demo.py", cut, *args), lambda: written(cut), span,
      seed=18, kills=3)
  assert hits, "no kill landed while the job was writing"
  got, want = kill_resume.files(cut), kill_resume.files(whole)
  assert sorted(got) == sorted(want)
  for rel in want:
    if rel.endswith(".npz"):  # arrays, not zip bytes
      a, b = np.load(os.path.join(cut, rel)), np.load(os.path.join(whole, rel))
      assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), rel
    else:
      assert got[rel] == want[rel], rel
