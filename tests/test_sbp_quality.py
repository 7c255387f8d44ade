"""Quality metrics (Table 3.3 / B.1) on constructed documents with known answers."""

import numpy as np
import pytest

from sbp_jax.sbp import quality as q

BASE = ("the committee met on tuesday to review the budget for the new library and agreed that "
        "the reading room should open before the winter term begins in the old town hall")
OTHER = ("volcanic soils hold water well and farmers on the island grow coffee tea and bananas "
         "on terraces cut into the steep slopes above the harbour")
THIRD = ("a sorting network compares pairs of keys in a fixed order so the same circuit sorts any "
         "input and it maps well onto parallel hardware such as graphics processors")
# The same text with different spacing, punctuation, case and numbers: a copy.
COPY = "The Committee met on Tuesday, to review the budget (2024) for the new library... and " \
       "agreed that the reading room should open before the winter term begins in the old town hall!"
# A near-duplicate: the last word changed (Jaccard of the 5-gram sets 28/30).
NEAR = BASE.replace("town hall", "town square")
REPETITIVE = OTHER + " " + " ".join(["buy cheap tickets now"] * 5)


def test_repeated_shingle_detection():
  assert q.has_repeated_shingle(list(range(13)) * 2)
  assert not q.has_repeated_shingle(list(range(26)))
  assert not q.has_repeated_shingle([1] * 12)  # shorter than a shingle
  assert q.has_repeated_shingle([1] * 14)
  assert q.repetition_rate([REPETITIVE, BASE, OTHER, THIRD]) == 0.25
  assert q.repetition_rate([[5] * 20, list(range(20))]) == 0.5


def test_duplicate_rate_counts_later_near_duplicates():
  assert q.jaccard(q.shingle_set(BASE), q.shingle_set(NEAR)) > 0.6
  flags = q.near_duplicate_flags([BASE, OTHER, NEAR, THIRD, COPY])
  assert flags == [False, False, True, False, True]
  assert q.duplicate_at_n([BASE, OTHER, THIRD]) == 0.0
  assert q.duplicate_at_n([BASE, OTHER, NEAR, THIRD]) == 0.25
  # A sample of N=2 out of four distinct docs never sees a duplicate pair.
  assert q.duplicate_at_n([BASE, OTHER, THIRD, REPETITIVE], n=2, seed=3) == 0.0


def test_pair_copying_flags_copies_not_related_docs():
  assert q.pair_copying([BASE, BASE, OTHER], [COPY, THIRD, REPETITIVE]) == pytest.approx(2 / 3)
  assert q.pair_copying([BASE], [OTHER]) == 0.0
  with pytest.raises(ValueError, match="each output needs its seed"):
    q.pair_copying([BASE], [])


def _bow_embed(texts):
  """Hashed bag of words, unit-normalised: similar wording -> similar vectors."""
  out = np.zeros((len(texts), 64))
  for i, t in enumerate(texts):
    for w in q.words(t):
      out[i, sum(map(ord, w)) % 64] += 1
  return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_similarity_and_irrelevance():
  sims = q.pair_similarities([BASE, BASE], [COPY, THIRD], _bow_embed)
  assert sims[0] == pytest.approx(1.0) and sims[1] < 0.6
  assert q.pair_irrelevance(sims, 0.6) == 0.5
  # REPETITIVE is OTHER plus spam: most of its shingles are OTHER's, so it copies it; here it is
  # paired with an unrelated seed instead.
  assert q.pair_copying([OTHER], [REPETITIVE]) == 1.0
  report = q.quality_report([COPY, THIRD, REPETITIVE], [BASE, BASE, THIRD], _bow_embed,
                            irrelevance_threshold=0.6)
  assert report["repetition"] == pytest.approx(1 / 3)
  assert report["duplicate"] == 0.0
  assert report["pair_copying"] == pytest.approx(1 / 3)
  direct = q.pair_similarities([BASE, BASE, THIRD], [COPY, THIRD, REPETITIVE], _bow_embed)
  assert report["similarity"] == pytest.approx(direct.mean())
  assert report["pair_irrelevance"] == pytest.approx(np.mean(direct < 0.6))
  real = q.quality_report([BASE, OTHER, NEAR], [])
  assert "pair_copying" not in real and real["duplicate"] == pytest.approx(1 / 3)
  table = q.format_quality_table({"SBP": report, "Real data": real})
  assert "n.a." in table.splitlines()[2] and "33.3%" in table.splitlines()[1]
  assert "Duplicate@3" in table.splitlines()[0]  # labelled with the N actually sampled
  # The synthesis filter's rate over every output (before dropping) has its own column.
  table = q.format_quality_table({"SBP": dict(report, repetition_before_filter=0.25),
                                  "Real data": q.quality_report([BASE, OTHER], [],
                                                                duplicate_n=100)})
  assert "25.0%" in table.splitlines()[1] and "@2" in table.splitlines()[2]


def test_random_pairs_is_a_derangement():
  for seed in range(5):
    p = q.random_pairs(7, seed)
    assert sorted(p) == list(range(7)) and all(p[i] != i for i in range(7))
