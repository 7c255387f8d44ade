"""ScaNN vs exact top-k search: recall@k and queries per second.

Database: N clustered unit vectors (synthetic, --n/--dim/--clusters) or the
embedding shards of a pairing run (--emb-dir, e.g. runs/sbp_pair_demo/embeddings).
Queries: --nq held-out vectors of the same distribution (synthetic) or --nq
database rows (embeddings; recall then counts the row itself on both sides).
Exact search is numpy (BLAS matmul + argpartition in batches); ScaNN is built
per setting (one value shard, as each value shard of the job is built) and
queried with search_batched_parallel. Both use every core.

  .venv/bin/python benchmarks/pairing.py [--n 1000000] [--nq 2000] [--k 200]
      [--settings ah:50:800,int8:50:800]   # scoring:leaves_to_search:reorder
  .venv/bin/python benchmarks/pairing.py --emb-dir runs/sbp_pair_demo/embeddings --k 50
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from sbp_jax.sbp.pairing.embed import read_embedding_shard  # pylint: disable=g-import-not-at-top
from sbp_jax.sbp.pairing.search import (SearchConfig, build_searcher, clustered_unit_vectors,
                                exact_topk, search)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
  k = truth.shape[1]
  return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(found, truth)]))


def load_embeddings(emb_dir: str) -> np.ndarray:
  files = sorted(glob.glob(os.path.join(emb_dir, "emb-*.npz")))
  if not files:
    raise FileNotFoundError(f"{emb_dir} holds no emb-*.npz shards; run the pairing job first.")
  return np.concatenate([read_embedding_shard(f)[0] for f in files])


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--n", type=int, default=1_000_000)
  ap.add_argument("--dim", type=int, default=256)
  ap.add_argument("--clusters", type=int, default=2000)
  ap.add_argument("--spread", type=float, default=1.0)
  ap.add_argument("--nq", type=int, default=2000)
  ap.add_argument("--k", type=int, default=200)
  ap.add_argument("--emb-dir", default="")
  ap.add_argument("--settings", default="ah:0:0,int8:0:0",
                  help="comma-separated scoring:leaves_to_search:reorder (0 = config default)")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args()

  t0 = time.perf_counter()
  if args.emb_dir:
    db = load_embeddings(args.emb_dir)
    rng = np.random.default_rng(args.seed)
    queries = db[rng.choice(len(db), min(args.nq, len(db)), replace=False)]
    source = f"embeddings {args.emb_dir}"
  else:
    x = clustered_unit_vectors(args.n + args.nq, args.dim, args.clusters, args.spread,
                               args.seed)
    db, queries = x[:args.n], x[args.n:]
    source = f"synthetic clusters={args.clusters} spread={args.spread}"
  k = min(args.k, len(db))
  print(f"database {db.shape[0]} x {db.shape[1]} ({source}), {len(queries)} queries, "
        f"k={k}; data ready in {time.perf_counter() - t0:.1f}s", flush=True)

  t0 = time.perf_counter()
  truth, truth_s = exact_topk(queries, db, k, batch=256)
  exact_s = time.perf_counter() - t0
  exact_qps = len(queries) / exact_s
  print(f"exact (numpy matmul + argpartition): {exact_qps:,.1f} q/s "
        f"(mean top-1 sim {truth_s[:, 0].mean():.3f}, mean top-{k} sim {truth_s[:, -1].mean():.3f})",
        flush=True)

  print(f"{'scoring':<8}{'leaves':>8}{'search':>8}{'reorder':>9}{'build s':>9}"
        f"{'recall@' + str(k):>12}{'q/s':>11}{'exact q/s':>10}{'speedup':>9}")
  for spec in args.settings.split(","):
    scoring, ls, ro = spec.split(":")
    sc = SearchConfig(k=k, scoring=scoring, leaves_to_search=int(ls), reorder=int(ro))
    nl, nls = sc.leaves(len(db))
    t0 = time.perf_counter()
    searcher = build_searcher(db, sc)
    build = time.perf_counter() - t0
    search(searcher, queries[:64], k)  # warm-up
    t0 = time.perf_counter()
    idx, _ = search(searcher, queries, k)
    qps = len(queries) / (time.perf_counter() - t0)
    # Exact search again on a slice right after, so that the speedup compares runs under
    # the same machine load (this box is shared).
    t0 = time.perf_counter()
    exact_topk(queries[:256], db, k, batch=256)
    exact_now = min(256, len(queries)) / (time.perf_counter() - t0)
    print(f"{scoring:<8}{nl:>8}{nls:>8}{max(k, sc.reorder or sc.reorder_mult * k):>9}"
          f"{build:>9.1f}{recall(idx, truth):>12.4f}{qps:>11,.1f}{exact_now:>10,.1f}"
          f"{qps / exact_now:>8.1f}x", flush=True)


if __name__ == "__main__":
  main()
