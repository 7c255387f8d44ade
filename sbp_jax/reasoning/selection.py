"""s1K-style selection of a small reasoning SFT set (thesis B.4.2, Algorithm 2).

Stages over a pool of questions with per-question features:
  1. quality: drop API errors and texts matching formatting-issue patterns;
     drop questions sharing an n-gram (8 by default) with evaluation questions;
  2. always keep: questions from designated sources that satisfy a rule
     (e.g. teacher-correct AIME/GPQA; teacher-correct MATH with > 5,600
     thinking tokens);
  3. difficulty: drop questions either reference model solved;
  4. diversity: until the target size, pick a domain uniformly at random, then a
     question from it with weight 2^-rank (rank 0 = longest thinking trace),
     removing exhausted domains.

Pool records are dicts with: id, question, domain, source, thinking_tokens,
and optionally trace, api_error (bool), teacher_correct (bool), and
reference_correct ({model: bool}).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from sbp_jax.fileio import iter_jsonl

REQUIRED_FIELDS = ("id", "question", "domain", "source", "thinking_tokens")


@dataclasses.dataclass(frozen=True)
class KeepRule:
  sources: tuple[str, ...]
  require_teacher_correct: bool = True
  min_thinking_tokens: int = 0

  def matches(self, q: dict) -> bool:
    return (q["source"] in self.sources
            and (q.get("teacher_correct", False) or not self.require_teacher_correct)
            and q["thinking_tokens"] > self.min_thinking_tokens)


@dataclasses.dataclass
class Selection:
  selected: list[dict]
  counts: dict[str, int]          # survivors after each stage
  per_domain: dict[str, int]
  always_kept: int


def load_pool(path: str) -> list[dict]:
  """Reads a JSONL pool; errors name the file, line and missing field."""
  out = []
  for n, rec in iter_jsonl(path):
    missing = [k for k in REQUIRED_FIELDS if k not in rec]
    if missing:
      raise ValueError(f"{path}:{n}: missing field(s) {missing}; every pool record needs "
                       f"{list(REQUIRED_FIELDS)}.")
    out.append(rec)
  return out


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
  words = re.findall(r"\w+", text.lower())
  return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def contaminated(pool: Sequence[dict], eval_questions: Iterable[str], n: int = 8) -> set:
  """Ids of pool questions sharing any word n-gram with an evaluation question."""
  bad: set[tuple[str, ...]] = set()
  for q in eval_questions:
    bad |= _ngrams(q, n)
  return {q["id"] for q in pool if _ngrams(q["question"], n) & bad}


def diversity_sample(pool: Sequence[dict], k: int, rng: np.random.Generator,
                     already: Iterable = ()) -> list[dict]:
  """Algorithm 2's loop: uniform domain, then 2^-rank weighting by thinking length."""
  taken = set(already)
  by_domain: dict[str, list[dict]] = {}
  for q in pool:
    if q["id"] not in taken:
      by_domain.setdefault(q["domain"], []).append(q)
  for qs in by_domain.values():  # rank 0 = longest trace; ties broken by id
    qs.sort(key=lambda q: (-q["thinking_tokens"], str(q["id"])))
  domains = sorted(by_domain)
  out = []
  while len(out) < k and domains:
    d = domains[rng.integers(len(domains))]
    qs = by_domain[d]
    w = 0.5 ** np.arange(len(qs), dtype=np.float64)
    i = rng.choice(len(qs), p=w / w.sum())
    out.append(qs.pop(i))
    if not qs:
      domains.remove(d)
  return out


def select(pool: Sequence[dict], target: int, seed: int, *,
           format_patterns: Sequence[str] = (), eval_questions: Sequence[str] = (),
           ngram: int = 8, keep_rules: Sequence[KeepRule] = (),
           reference_models: Sequence[str] = ()) -> Selection:
  rng = np.random.default_rng(seed)
  counts = {"pool": len(pool)}
  ok = [q for q in pool if not q.get("api_error", False)]
  counts["no_api_error"] = len(ok)
  pats = [re.compile(p) for p in format_patterns]
  ok = [q for q in ok
        if not any(p.search(q["question"]) or p.search(q.get("trace", "")) for p in pats)]
  counts["quality"] = len(ok)
  bad = contaminated(ok, eval_questions, ngram)
  ok = [q for q in ok if q["id"] not in bad]
  counts["decontaminated"] = len(ok)

  kept = [q for q in ok if any(r.matches(q) for r in keep_rules)]
  if len(kept) > target:
    raise ValueError(f"The always-keep rules select {len(kept)} questions, more than the target "
                     f"{target}; tighten s1k.keep_rules or raise s1k.target.")
  counts["always_keep"] = len(kept)

  if not reference_models:
    raise ValueError("s1k.reference_models is empty: the difficulty stage needs reference-model "
                     "results (the thesis grades the pool with Qwen2.5-7B- and 32B-Instruct); "
                     "grade every pool question with each model into reference_correct "
                     "({model: bool}) and list the models in s1k.reference_models.")

  def solved(q):
    got = q.get("reference_correct", {})
    missing = [m for m in reference_models if m not in got]
    if missing:
      raise ValueError(f"Pool record {q['id']!r}: reference_correct lacks {missing}; grade "
                       f"every question with each model in s1k.reference_models.")
    return any(got[m] for m in reference_models)
  hard = [q for q in ok if not solved(q)]
  counts["difficulty"] = len(hard)

  picked = diversity_sample(hard, target - len(kept), rng, already=(q["id"] for q in kept))
  selected = kept + picked
  counts["selected"] = len(selected)
  return Selection(selected, counts, dict(sorted(Counter(q["domain"] for q in selected).items())),
                   len(kept))
