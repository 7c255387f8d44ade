"""Pair selection from merged neighbours, and the statistics file.

Rules, in order (each pair is counted under the first rule that drops it):
self_match (the query found itself; dropped in the merge), below_alpha
(similarity <= alpha), near_duplicate (a 13-token shingle of d1 occurs in d2),
cap (more than `cap` surviving neighbours of one d1; the most similar stay).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

RULES = ("self_match", "below_alpha", "near_duplicate", "cap")


@dataclasses.dataclass(frozen=True)
class SelectConfig:
  alpha: float = 0.75     # the thesis keeps pairs with similarity > 0.75
  cap: int = 0            # max pairs per d1 (0 = no cap)
  shingle: int = 13
  hist_bins: int = 40     # similarity histogram over [-1, 1]

  @classmethod
  def from_dict(cls, d) -> "SelectConfig":
    d = dict(d.items()) if hasattr(d, "items") else dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


def new_stats(bins: int) -> dict:
  return {"queries": 0, "neighbours": 0, "kept": 0, "sum_kept_similarity": 0.0,
          "dropped": {r: 0 for r in RULES}, "histogram": [0] * bins}


def add_stats(a: dict, b: dict) -> dict:
  return {"queries": a["queries"] + b["queries"], "neighbours": a["neighbours"] + b["neighbours"],
          "kept": a["kept"] + b["kept"],
          "sum_kept_similarity": a["sum_kept_similarity"] + b["sum_kept_similarity"],
          "dropped": {r: a["dropped"][r] + b["dropped"][r] for r in RULES},
          "histogram": [x + y for x, y in zip(a["histogram"], b["histogram"])]}


def histogram(scores: np.ndarray, bins: int) -> list[int]:
  h, _ = np.histogram(np.clip(scores, -1.0, 1.0), bins=bins, range=(-1.0, 1.0))
  return [int(x) for x in h]


def above_alpha(query_gids: np.ndarray, nbr_gids: np.ndarray, nbr_scores: np.ndarray,
                alpha: float, stats: dict) -> dict[int, list[tuple[int, float]]]:
  """Merged top-k (self already removed) -> {d1 gid: [(d2 gid, sim), ...] by decreasing sim}.

  Updates stats: queries, neighbours, histogram (of every neighbour), below_alpha.
  """
  valid = nbr_gids >= 0
  stats["queries"] += len(query_gids)
  stats["neighbours"] += int(valid.sum())
  h = histogram(nbr_scores[valid], len(stats["histogram"]))
  stats["histogram"] = [x + y for x, y in zip(stats["histogram"], h)]
  keep = valid & (nbr_scores > alpha)
  stats["dropped"]["below_alpha"] += int((valid & ~keep).sum())
  out = {}
  for row in np.flatnonzero(keep.any(axis=1)):
    cols = np.flatnonzero(keep[row])  # merge output is already sorted by (-sim, gid)
    out[int(query_gids[row])] = [(int(nbr_gids[row, c]), float(nbr_scores[row, c])) for c in cols]
  return out


def select_for_d1(d1: Mapping, cands: Sequence[tuple[int, float]], docs: Mapping[int, Mapping],
                  rule, cap: int, stats: dict) -> list[dict]:
  """Applies the near-duplicate rule and the cap to one d1's candidates -> pair records."""
  from sbp_jax.sbp.shingles import contains_window, shingles  # pylint: disable=g-import-not-at-top
  d1_shingles = shingles(rule.tokens(d1["text"]), rule.n)
  out = []
  for d2_gid, sim in cands:
    d2 = docs[d2_gid]
    if contains_window(rule.tokens(d2["text"]), d1_shingles, rule.n):
      stats["dropped"]["near_duplicate"] += 1
      continue
    if cap and len(out) >= cap:
      stats["dropped"]["cap"] += 1
      continue
    out.append(pair_record(d1, d2, sim))
    stats["kept"] += 1
    stats["sum_kept_similarity"] += sim
  return out


def pair_record(d1: Mapping, d2: Mapping, sim: float) -> dict:
  """The data layer's `pairs` format ({"d1", "d2"}) plus provenance."""
  return {"d1": d1["text"], "d2": d2["text"], "d1_id": d1["id"], "d2_id": d2["id"],
          "similarity": round(float(sim), 6)}


def finalize_stats(total: dict, alpha: float, random_mean: float, random_n: int) -> dict:
  bins = len(total["histogram"])
  edges = np.linspace(-1.0, 1.0, bins + 1)
  return {
      "alpha": alpha,
      "queries": total["queries"],
      "neighbours": total["neighbours"],
      "kept": total["kept"],
      "dropped": {**total["dropped"]},
      "mean_similarity_kept": (total["sum_kept_similarity"] / total["kept"]
                               if total["kept"] else None),
      "mean_similarity_random": random_mean,
      "random_pairs": random_n,
      "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": total["histogram"]},
  }


def random_pair_similarity(load_rows, num_docs: int, n: int, seed: int) -> float:
  """Mean similarity of n random pairs (i != j) of num_docs rows; load_rows(idx) -> vectors."""
  rng = np.random.default_rng(seed)
  i = rng.integers(0, num_docs, n)
  j = (i + rng.integers(1, max(num_docs, 2), n)) % num_docs  # uniform over j != i
  a, b = load_rows(i), load_rows(j)
  return float(np.mean(np.sum(a * b, axis=1)))
