"""Top-k inner-product search with ScaNN over value shards, and the merge.

Layout (thesis Figure B.1): the database is split into value shards, each with
its own ScaNN searcher (a k-means tree with about sqrt(N) leaves, 8-bit-class
quantized scoring, exact float reordering of the best candidates). Queries come
in key shards; key shard q goes to salt q % num_salts, i.e. to one of
num_salts copies of each searcher, so one value shard's work spreads over
num_salts workers. Each (key shard, value shard) search returns gids and
scores; per query these are merged into the global top-k, minus the query
itself (self-match).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

SCORINGS = ("ah", "int8", "float")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """scoring: 'ah' (anisotropic hashing: 4-bit codes per 2-dim block, int8 lookup
  tables, score_ah), 'int8' (scalar-quantized int8 dot products in the searched
  leaves, score_brute_force(INT8)), or 'float' (float32 dot products in the
  searched leaves; exact when every leaf is searched). Candidates are rescored
  in float32 (reorder) before the top k are returned.

  num_leaves 0: round(sqrt(N)) per shard. leaves_to_search 0: ceil(leaves_frac
  * num_leaves). reorder 0: reorder_mult * k. A shard smaller than min_tree_size
  is searched without a tree.
  """

  k: int = 200
  scoring: str = "ah"
  num_leaves: int = 0
  leaves_to_search: int = 0
  leaves_frac: float = 0.06
  reorder: int = 0
  reorder_mult: int = 4
  training_sample_size: int = 100_000
  ah_dims_per_block: int = 2
  ah_threshold: float = 0.2
  min_tree_size: int = 1000
  threads: int = 0

  def __post_init__(self):
    if self.scoring not in SCORINGS:
      raise ValueError(f"pair.search.scoring={self.scoring!r}; choose one of {SCORINGS}.")
    if self.k < 1:
      raise ValueError(f"pair.search.k={self.k} must be >= 1.")

  @classmethod
  def from_dict(cls, d) -> "SearchConfig":
    d = dict(d.items()) if hasattr(d, "items") else dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(d) - known - {"num_value_shards", "num_salts", "key_shard_size"})
    if extra:
      raise ValueError(f"unknown pair.search field(s) {extra}; known: {sorted(known)}.")
    return cls(**{k: v for k, v in d.items() if k in known})

  def leaves(self, n: int) -> tuple[int, int]:
    """(num_leaves, leaves_to_search) for a shard of n vectors."""
    nl = self.num_leaves or max(1, round(math.sqrt(n)))
    nl = min(nl, max(1, n // 10))
    ls = self.leaves_to_search or math.ceil(self.leaves_frac * nl)
    return nl, min(max(1, ls), nl)


def build_searcher(db: np.ndarray, sc: SearchConfig, k: int | None = None):
  """A ScaNN searcher over the rows of `db` (unit vectors) returning k (default sc.k) hits."""
  import scann  # pylint: disable=g-import-not-at-top
  from scann.scann_ops.py.scann_builder import ReorderType  # pylint: disable=g-import-not-at-top
  db = np.ascontiguousarray(db, np.float32)
  n = db.shape[0]
  k = min(k or sc.k, n)
  b = scann.scann_ops_pybind.builder(db, k, "dot_product")
  if n >= sc.min_tree_size:
    nl, ls = sc.leaves(n)
    # k-means++ initialisation (random_init=False) is seeded, so a rebuilt searcher
    # returns the same neighbours; ScaNN's random initialisation is not reproducible.
    b = b.tree(num_leaves=nl, num_leaves_to_search=ls,
               training_sample_size=min(n, sc.training_sample_size), random_init=False)
  if sc.scoring == "ah":
    b = b.score_ah(sc.ah_dims_per_block, anisotropic_quantization_threshold=sc.ah_threshold,
                   training_sample_size=min(n, sc.training_sample_size))
  else:
    b = b.score_brute_force(ReorderType.INT8 if sc.scoring == "int8" else ReorderType.FLOAT32)
  if sc.scoring != "float" or n >= sc.min_tree_size:
    b = b.reorder(max(k, sc.reorder or sc.reorder_mult * k))
  if sc.threads:
    b = b.set_n_training_threads(sc.threads)
  return b.build()


def search(searcher, queries: np.ndarray, k: int, batch: int = 4096
           ) -> tuple[np.ndarray, np.ndarray]:
  """-> (row indices [q, k] int64, scores [q, k] float32); short rows padded with -1 / -inf."""
  queries = np.ascontiguousarray(queries, np.float32)
  idx = np.full((len(queries), k), -1, np.int64)
  sc = np.full((len(queries), k), -np.inf, np.float32)
  for s in range(0, len(queries), batch):
    i, d = searcher.search_batched_parallel(queries[s:s + batch], final_num_neighbors=k)
    i, d = np.asarray(i), np.asarray(d)
    idx[s:s + len(i), :i.shape[1]] = i
    sc[s:s + len(i), :i.shape[1]] = d
  sc[idx < 0] = -np.inf
  return idx, sc


def search_value_shard(searcher, value_gids: np.ndarray, queries: np.ndarray, k: int
                       ) -> tuple[np.ndarray, np.ndarray]:
  """One (key shard, value shard) search: k + 1 hits so that the self-match can go."""
  kk = min(k + 1, len(value_gids))
  idx, sc = search(searcher, queries, kk)
  return np.where(idx >= 0, value_gids[np.maximum(idx, 0)], -1), sc


def exact_topk(queries: np.ndarray, db: np.ndarray, k: int, batch: int = 1024
               ) -> tuple[np.ndarray, np.ndarray]:
  """Brute-force top-k by inner product (BLAS matmul + argpartition per batch)."""
  k = min(k, len(db))
  idx = np.empty((len(queries), k), np.int64)
  sc = np.empty((len(queries), k), np.float32)
  for s in range(0, len(queries), batch):
    scores = queries[s:s + batch] @ db.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    ps = np.take_along_axis(scores, part, axis=1)
    o = np.argsort(-ps, axis=1, kind="stable")
    idx[s:s + len(part)] = np.take_along_axis(part, o, axis=1)
    sc[s:s + len(part)] = np.take_along_axis(ps, o, axis=1)
  return idx, sc


def merge_topk(parts: list[tuple[np.ndarray, np.ndarray]], k: int,
               query_gids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
  """Per-query global top-k from per-value-shard (gids, scores) lists.

  Drops the query's own gid (self-match) and padding. Ties break on the smaller
  gid so the result does not depend on how the database was sharded.
  Returns (gids [q, k] with -1 padding, scores [q, k], number of self-matches dropped).
  """
  gids = np.concatenate([p[0] for p in parts], axis=1)
  scores = np.concatenate([p[1] for p in parts], axis=1).astype(np.float32)
  valid = gids >= 0
  self_hits = 0
  if query_gids is not None:
    is_self = gids == np.asarray(query_gids)[:, None]
    self_hits = int(is_self.sum())
    valid &= ~is_self
  scores = np.where(valid, scores, -np.inf)
  gids = np.where(valid, gids, -1)
  # lexsort: last key is primary (score desc), then gid asc.
  order = np.lexsort((np.where(valid, gids, np.iinfo(np.int64).max), -scores), axis=1)[:, :k]
  out_g = np.take_along_axis(gids, order, axis=1)
  out_s = np.take_along_axis(scores, order, axis=1)
  if out_g.shape[1] < k:
    pad = k - out_g.shape[1]
    out_g = np.pad(out_g, ((0, 0), (0, pad)), constant_values=-1)
    out_s = np.pad(out_s, ((0, 0), (0, pad)), constant_values=-np.inf)
  return out_g, out_s, self_hits


def salt_of(key_shard: int, num_salts: int) -> int:
  return key_shard % max(1, num_salts)


def value_shard_members(num_key_shards: int, num_value_shards: int) -> list[list[int]]:
  """Value shard v holds the embedding shards s with s % num_value_shards == v."""
  return [list(range(v, num_key_shards, num_value_shards)) for v in range(num_value_shards)]


def search_all(key_shards: list[tuple[np.ndarray, np.ndarray]],
               value_shards: list[tuple[np.ndarray, np.ndarray]], sc: SearchConfig,
               num_salts: int = 1) -> list[tuple[np.ndarray, np.ndarray, int]]:
  """In-memory driver of the sharded search: (vectors, gids) per key / value shard ->
  per key shard (top-k gids, scores, self-matches dropped).

  Each value shard's searcher is built once per salt (the copies a cluster job
  would hold on different workers); salt s serves key shards q with q % S == s.
  """
  partial: dict[int, list] = {q: [] for q in range(len(key_shards))}
  for vecs, gids in value_shards:
    for salt in range(max(1, num_salts)):
      mine = [q for q in range(len(key_shards)) if salt_of(q, num_salts) == salt]
      if not mine:
        continue
      searcher = build_searcher(vecs, sc, k=min(sc.k + 1, len(gids)))
      for q in mine:
        partial[q].append(search_value_shard(searcher, gids, key_shards[q][0], sc.k))
  return [merge_topk(partial[q], sc.k, key_shards[q][1]) for q in range(len(key_shards))]


def clustered_unit_vectors(n: int, dim: int, num_clusters: int, spread: float = 0.6,
                           seed: int = 0, dtype=np.float32) -> np.ndarray:
  """Synthetic embeddings: random unit centres plus Gaussian noise (spread = noise norm
  relative to the centre), normalised. Neighbours are mostly, not only, in-cluster."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((num_clusters, dim)).astype(dtype)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  out = np.empty((n, dim), dtype)
  for s in range(0, n, 65536):
    m = min(65536, n - s)
    x = centres[rng.integers(0, num_clusters, m)]
    x += rng.standard_normal((m, dim)).astype(dtype) * (spread / np.sqrt(dim))
    out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
  return out
