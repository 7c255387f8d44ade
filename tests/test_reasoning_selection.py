"""s1K selection: Algorithm 2 counts, always-keep, decontamination, determinism."""

import json

import numpy as np
import pytest

from sbp_jax.reasoning import selection as sel


def q(i, domain, tokens, source="pool", **kw):
  return dict(id=i, question=f"question number {i} about {domain}", domain=domain, source=source,
              thinking_tokens=tokens, reference_correct={"small": False, "large": False}, **kw)


def test_algorithm2_counts_per_domain():
  pool = [q(f"a{i}", "algebra", 100 + i) for i in range(2)]
  pool += [q(f"g{i}", "geometry", 100 + i) for i in range(2)]
  pool += [q(f"c{i}", "combinatorics", 100 + i) for i in range(50)]
  # 54 questions; asking for 40 exhausts the small domains first.
  s = sel.select(pool, 40, seed=0, reference_models=("small", "large"))
  assert s.per_domain == {"algebra": 2, "combinatorics": 36, "geometry": 2}
  assert len({x["id"] for x in s.selected}) == 40


def test_power_law_weighting_favours_long_traces():
  pool = [q(i, "d", tokens) for i, tokens in enumerate([10, 50, 30, 90, 70])]
  first = [sel.diversity_sample(pool, 1, np.random.default_rng(s))[0]["thinking_tokens"]
           for s in range(2000)]
  share = {t: first.count(t) / 2000 for t in (90, 70, 50)}
  assert share[90] == pytest.approx(16 / 31, abs=0.04)  # 2^0 / sum_{r<5} 2^-r
  assert share[70] == pytest.approx(8 / 31, abs=0.04)
  assert share[50] == pytest.approx(4 / 31, abs=0.03)


def test_filters_always_keep_and_decontamination():
  pool = [
      q("aime_ok", "algebra", 900, source="aime", teacher_correct=True),
      q("aime_wrong", "algebra", 900, source="aime", teacher_correct=False),
      q("math_long", "algebra", 6000, source="math", teacher_correct=True),
      q("math_short", "algebra", 5000, source="math", teacher_correct=True),
      q("err", "algebra", 800, api_error=True),
      q("ascii", "algebra", 800, trace="see the diagram [image: fig1.png]"),
      dict(q("easy", "geometry", 999), reference_correct={"small": True, "large": False}),
      q("leak", "geometry", 700),
      q("fine1", "geometry", 300),
      q("fine2", "geometry", 200),
  ]
  pool[7]["question"] = "Find all real x such that x squared plus two x equals fifteen exactly"
  evals = ["Problem: find all real x such that x squared plus two x equals fifteen exactly."]
  rules = [sel.KeepRule(("aime", "gpqa")), sel.KeepRule(("math",), min_thinking_tokens=5600)]
  s = sel.select(pool, 10, seed=3, format_patterns=[r"\[image:"], eval_questions=evals,
                 keep_rules=rules, reference_models=("small", "large"))
  ids = {x["id"] for x in s.selected}
  assert {"aime_ok", "math_long"} <= ids  # always kept by the source rules
  assert not ids & {"err", "ascii", "easy", "leak"}
  # Pool minus the four filtered equals what remains; the target cannot be met.
  assert ids == {"aime_ok", "math_long", "aime_wrong", "math_short", "fine1", "fine2"}
  assert s.counts == {"pool": 10, "no_api_error": 9, "quality": 8, "decontaminated": 7,
                      "always_keep": 2, "difficulty": 6, "selected": 6}


def test_deterministic_under_seed():
  pool = [q(i, f"d{i % 7}", (i * 37) % 1000) for i in range(300)]
  refs = ("small", "large")
  a = [x["id"] for x in sel.select(pool, 50, seed=11, reference_models=refs).selected]
  b = [x["id"] for x in sel.select(pool, 50, seed=11, reference_models=refs).selected]
  c = [x["id"] for x in sel.select(pool, 50, seed=12, reference_models=refs).selected]
  assert a == b and a != c


def test_difficulty_needs_reference_results():
  with pytest.raises(ValueError, match="s1k.reference_models is empty"):
    sel.select([q(1, "d", 5)], 1, seed=0)


def test_pool_errors_name_file_line_and_field(tmp_path):
  p = tmp_path / "pool.jsonl"
  p.write_text(json.dumps(q(1, "d", 5)) + "\n" + json.dumps({"id": 2, "question": "x"}) + "\n")
  with pytest.raises(ValueError, match=r"pool.jsonl:2: missing field\(s\) \['domain'"):
    sel.load_pool(str(p))
  p.write_text("{not json\n")
  with pytest.raises(ValueError, match=r"pool.jsonl:1: not valid JSON"):
    sel.load_pool(str(p))
