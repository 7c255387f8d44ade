"""The pairing stages as functions of (config, workdir, shard), shared by the
single-process driver (job.py) and the Beam pipeline (beam_pipeline.py).

Layout under workdir:
  docs/docs-NNNNN.jsonl, docs/manifest.json   corpus split, gid = row in corpus
  embeddings/emb-NNNNN.npz                     one per docs shard (= key shard)
  neighbors/nbr-qNNNNN-vVVV.npz                top-(k+1) of key shard q in value shard v
  pairs/pairs-NNNNN.jsonl, pairs/stats-NNNNN.json   selected pairs of key shard q
  stats.json                                   totals, histogram, kept vs random similarity
Every file is written under a temporary name and renamed, so existing files are
complete; each stage skips its finished outputs (resume).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from sbp_jax import fileio
from sbp_jax.fileio import write_jsonl
from sbp_jax.sbp.pairing import docs as docs_lib
from sbp_jax.sbp.pairing.embed import embed_docs, read_embedding_shard, write_npz
from sbp_jax.sbp.pairing.select import (SelectConfig, above_alpha, add_stats, finalize_stats, new_stats,
                               random_pair_similarity, select_for_d1)
from sbp_jax.sbp.pairing.search import (SearchConfig, build_searcher, merge_topk, salt_of,
                                search_value_shard, value_shard_members)

log = logging.getLogger(__name__)


class Layout:
  def __init__(self, workdir: str):
    self.workdir = workdir
    self.docs = os.path.join(workdir, "docs")
    self.emb = os.path.join(workdir, "embeddings")
    self.nbr = os.path.join(workdir, "neighbors")
    self.pairs = os.path.join(workdir, "pairs")

  def makedirs(self):
    for d in (self.docs, self.emb, self.nbr, self.pairs):
      fileio.makedirs(d)

  def emb_file(self, s: int) -> str:
    return os.path.join(self.emb, f"emb-{s:05d}.npz")

  def nbr_file(self, q: int, v: int) -> str:
    return os.path.join(self.nbr, f"nbr-q{q:05d}-v{v:03d}.npz")

  def pairs_file(self, q: int) -> str:
    return os.path.join(self.pairs, f"pairs-{q:05d}.jsonl")

  def stats_file(self, q: int) -> str:
    return os.path.join(self.pairs, f"stats-{q:05d}.json")

  def num_shards(self) -> int:
    """Docs shards of the split (its manifest), for stages not handed the count."""
    return int(fileio.read_json(os.path.join(self.docs, docs_lib.MANIFEST))["num_shards"])


def _progress(what: str, done: int, total: int) -> None:
  log.info("%s: %d/%d shards done", what, done, total)


def shard_counts(p, num_shards: int, announce: bool = False) -> tuple[int, int]:
  """(value shards, salts) for a corpus of num_shards docs shards. A value shard is a union
  of whole docs shards, so there are at most num_shards of them; merge_topk does not depend
  on the split, so using fewer than pair.search.num_value_shards leaves the pairs unchanged."""
  want = int(p.search.num_value_shards)
  nv = max(1, min(want, num_shards))
  if announce and nv < want:
    log.warning("pair.search.num_value_shards=%d but the corpus has %d docs shard(s) "
                "(pair.shard_size=%s): using %d value shard(s).", want, num_shards,
                p.shard_size, nv)
  return nv, int(p.search.num_salts)


# -- stage 0: corpus -> docs shards ----------------------------------------------------

def split(p, lay: Layout) -> dict:
  lay.makedirs()
  return docs_lib.split_corpus(p.corpus, lay.docs, int(p.shard_size), p.get("text_field", "text"),
                               p.get("id_field", "id"), int(p.get("max_docs", 0)))


# -- stage 1: embed ---------------------------------------------------------------------

def embed_shard(embedder_factory, lay: Layout, s: int) -> bool:
  """embedder_factory() is called only when the shard is missing (model loads are slow)."""
  if fileio.exists(lay.emb_file(s)):
    return False
  return embed_docs(embedder_factory(), docs_lib.read_shard(lay.docs, s), lay.emb_file(s))


# -- stage 2: search one value shard for the key shards of one salt ------------------------

def load_value_shard(lay: Layout, members) -> tuple[np.ndarray, np.ndarray]:
  parts = [read_embedding_shard(lay.emb_file(s)) for s in members]
  return np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts])


def search_salt(p, lay: Layout, num_shards: int, v: int, salt: int) -> list[int]:
  """Builds value shard v's searcher (this salt's copy) and searches the key shards
  q with q % num_salts == salt; returns the key shards now done for v."""
  sc = SearchConfig.from_dict(p.search)
  nv, ns = shard_counts(p, num_shards)
  keys = [q for q in range(num_shards) if salt_of(q, ns) == salt]
  todo = [q for q in keys if not fileio.exists(lay.nbr_file(q, v))]
  if todo:
    vecs, gids = load_value_shard(lay, value_shard_members(num_shards, nv)[v])
    searcher = build_searcher(vecs, sc, k=min(sc.k + 1, len(gids)))
    for q in todo:
      qv, qg, _ = read_embedding_shard(lay.emb_file(q))
      g, s = search_value_shard(searcher, gids, qv, sc.k)
      write_npz(lay.nbr_file(q, v), gids=g, scores=s, query_gids=qg)
      log.info("searched key shard %d in value shard %d (salt %d)", q, v, salt)
  return keys


# -- stage 3: merge + select one key shard --------------------------------------------------

def candidates(p, lay: Layout, q: int, stats: dict) -> dict[int, list[tuple[int, float]]]:
  """Merged global top-k of key shard q, thresholded at alpha."""
  sc, sel = SearchConfig.from_dict(p.search), SelectConfig.from_dict(p.select)
  nv, _ = shard_counts(p, lay.num_shards())
  parts, qg = [], None
  for v in range(nv):
    with fileio.open_file(lay.nbr_file(q, v)) as f, np.load(f) as z:
      parts.append((z["gids"], z["scores"]))
      qg = z["query_gids"]
  g, s, self_hits = merge_topk(parts, sc.k, qg)
  stats["dropped"]["self_match"] += self_hits
  return above_alpha(qg, g, s, sel.alpha, stats)


def needed_gids(p, lay: Layout, q: int) -> list[int]:
  """The d2 documents key shard q's selection will read (empty if q is finished)."""
  if fileio.exists(lay.stats_file(q)):
    return []
  c = candidates(p, lay, q, new_stats(SelectConfig.from_dict(p.select).hist_bins))
  return sorted({d2 for lst in c.values() for d2, _ in lst})


def select_shard(p, lay: Layout, q: int, rule, d2_docs) -> bool:
  """Writes pairs-q.jsonl then stats-q.json (the completion marker). d2_docs maps
  gid -> {"id", "text"} for every gid of needed_gids(q)."""
  if fileio.exists(lay.stats_file(q)):
    return False
  sel = SelectConfig.from_dict(p.select)
  stats = new_stats(sel.hist_bins)
  cands = candidates(p, lay, q, stats)
  d1_docs = {d["gid"]: d for d in docs_lib.read_shard(lay.docs, q)}
  write_jsonl(lay.pairs_file(q), (  # streamed: select_for_d1 fills `stats` as it goes
      rec for d1_gid in sorted(cands)
      for rec in select_for_d1(d1_docs[d1_gid], cands[d1_gid], d2_docs, rule, sel.cap, stats)))
  fileio.write_json(lay.stats_file(q), stats)
  log.info("selected key shard %d: %d pairs kept", q, stats["kept"])
  return True


# -- stage 4: totals -------------------------------------------------------------------------

def finalize(p, lay: Layout, num_shards: int, seed: int) -> dict:
  sel = SelectConfig.from_dict(p.select)
  total = new_stats(sel.hist_bins)
  for q in range(num_shards):
    total = add_stats(total, fileio.read_json(lay.stats_file(q)))
  # Random pairs come from up to 16 random shards, so this reads a bounded amount of
  # embeddings however large the corpus (shards are arbitrary slices of it).
  rng = np.random.default_rng(seed)
  picked = sorted(rng.choice(num_shards, min(num_shards, 16), replace=False).tolist())
  vecs = np.concatenate([read_embedding_shard(lay.emb_file(s))[0] for s in picked])
  n_rand = int(p.get("random_pairs", 10000))
  rand = (random_pair_similarity(lambda g: vecs[g], len(vecs), n_rand, seed)
          if len(vecs) > 1 else None)
  stats = finalize_stats(total, sel.alpha, rand, n_rand)
  fileio.write_json(os.path.join(lay.workdir, "stats.json"), stats)
  return stats


class DocLookup:
  """gid -> doc, reading docs shards on first use (the single-process path)."""

  def __init__(self, lay: Layout, shard_size: int):
    self.lay, self.size, self.cache = lay, shard_size, {}

  def __getitem__(self, gid: int) -> dict:
    s = gid // self.size
    if s not in self.cache:
      self.cache[s] = docs_lib.read_shard(self.lay.docs, s)
    return self.cache[s][gid - s * self.size]
