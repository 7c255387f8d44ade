"""Job `pair`: corpus -> embeddings -> sharded, salted ScaNN top-k -> pairs + stats.

config.pair.runner picks the single-process driver ('local', for small corpora)
or the Beam pipeline ('beam'; DirectRunner here, Dataflow/Flink by flags, see
beam_pipeline.py). Both call the functions of stages.py and write the same files;
a re-run skips every finished shard.
"""

from __future__ import annotations

import functools
import json
import logging

from sbp_jax.sbp.pairing import stages
from sbp_jax.sbp.shingles import NearDuplicateRule, make_shingle_tokenizer

log = logging.getLogger(__name__)


def shingle_tokenizer(config):
  """pair.select.tokenizer when it names one, else the job's tokenizer (the thesis
  counts shingles in the training tokenizer's tokens)."""
  sel = config.pair.select.get("tokenizer")
  if sel and (sel.get("path") or sel.get("kind") == "bytes"):
    return sel
  return config.tokenizer


def make_rule(config) -> NearDuplicateRule:
  return NearDuplicateRule(make_shingle_tokenizer(shingle_tokenizer(config)),
                           int(config.pair.select.shingle))


def run_local(config, workdir: str, stop_after_shards: int = 0) -> dict:
  """Single-process path. stop_after_shards > 0 stops (raising) after that many selection
  shards were written, to test resumption."""
  from sbp_jax.sbp.pairing.embed import make_embedder  # pylint: disable=g-import-not-at-top
  p = config.pair
  lay = stages.Layout(workdir)
  man = stages.split(p, lay)
  n = man["num_shards"]
  embedder = functools.lru_cache(None)(lambda: make_embedder(config))
  for s in range(n):
    stages.embed_shard(embedder, lay, s)
  stages._progress("embed", n, n)  # pylint: disable=protected-access
  nv, ns = stages.shard_counts(p, n, announce=True)
  for v in range(nv):
    for salt in range(ns):
      stages.search_salt(p, lay, n, v, salt)
  stages._progress("search", n, n)  # pylint: disable=protected-access
  rule, lookup, written = make_rule(config), stages.DocLookup(lay, man["shard_size"]), 0
  for q in range(n):
    written += stages.select_shard(p, lay, q, rule, lookup)
    if stop_after_shards and written >= stop_after_shards:
      raise InterruptedError(f"stopped after {written} selection shards (test hook)")
  return stages.finalize(p, lay, n, int(config.seed))


OUTPUTS = ("docs", "embeddings", "neighbors", "pairs", "stats.json")
# Which driver runs the stages, and its options: both write the same files.
HOW = ("pair.runner", "pair.beam_options")


def identity_keys(config) -> list[str]:
  """The sections the pairs depend on: the job's tokenizer when the shingle rule or an LM
  embedder reads it, and the model for an LM embedder."""
  lm = config.pair.embedder.kind == "lm"
  keys = ["pair", "seed"]
  if lm or shingle_tokenizer(config) is config.tokenizer:
    keys.append("tokenizer")
  return keys + (["model"] if lm else [])


def check(config) -> None:
  """The settings and inputs the job needs, before it claims its workdir."""
  from sbp_jax import validate  # pylint: disable=g-import-not-at-top
  from sbp_jax.errors import InputError  # pylint: disable=g-import-not-at-top
  from sbp_jax.sbp.pairing import docs  # pylint: disable=g-import-not-at-top
  p = config.pair
  if p.runner not in ("local", "beam"):
    raise InputError(f"pair.runner={p.runner!r}; choose 'local' or 'beam'.")
  if p.embedder.kind not in ("encoder", "lm"):
    raise InputError(f"pair.embedder.kind={p.embedder.kind!r}; choose 'encoder' (a BERT "
                     "sentence encoder directory) or 'lm' (an sbp_jax checkpoint).")
  for key, value in (("shard_size", p.shard_size), ("embedder.batch_size", p.embedder.batch_size),
                     ("search.k", p.search.k), ("search.num_value_shards",
                                                p.search.num_value_shards),
                     ("search.num_salts", p.search.num_salts),
                     ("select.shingle", p.select.shingle)):
    validate.positive(f"pair.{key}", value)
  validate.finite_number("pair.select.alpha", p.select.alpha)
  # Every record the split reads: a missing corpus or a bad line is named before the claim.
  docs.check_corpus(p.corpus, p.get("text_field", "text"), p.get("id_field", "id"),
                    int(p.get("max_docs", 0)))


def run(config, workdir: str) -> dict:
  from sbp_jax import runs  # pylint: disable=g-import-not-at-top
  p = config.pair
  check(config)
  runs.claim(workdir, "pair", config, identity_keys(config), OUTPUTS, ignore=HOW)
  if p.runner == "local":
    stats = run_local(config, workdir)
  elif p.runner == "beam":
    from sbp_jax.sbp.pairing.beam import run_beam  # pylint: disable=g-import-not-at-top
    stats = run_beam(config, workdir)
  summary = {k: stats[k] for k in ("queries", "neighbours", "kept", "dropped",
                                   "mean_similarity_kept", "mean_similarity_random")}
  print(json.dumps(summary, indent=1))
  return stats
