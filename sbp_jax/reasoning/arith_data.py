"""A tiny arithmetic-reasoning dataset whose traces are exact (for the s1 demo).

A question is a left-to-right chain of single-digit operations, e.g.
    "Left to right: 3+8*4+7"
and its trace evaluates one operation per line, carrying the running value:
    "3+8=11\n11*4=44\n44+7=51\n"
with answer "51". With probability `p_recheck` a step is followed by a
re-check that redoes it, "Wait, 11*4=44\n" (and that by another with the
same probability; at most 2 in a row and 3 per problem), so the string budget
forcing appends to extend thinking ("Wait") is in-distribution: after it the
model re-derives its last step (which can repair a slip) instead of
continuing from a string it has never seen. Running values stay below 100 (a multiplication that would
reach 100 becomes an addition), so every step is a small table lookup a tiny
model can learn, while the number of steps (2..max_ops) sets how long the
model has to think: cutting the trace short (budget forcing's max budget)
leaves it without the final value.

Generation depends only on the seed; train and test questions are disjoint.
"""

from __future__ import annotations

import os

import numpy as np

from sbp_jax import fileio
from sbp_jax.fileio import write_jsonl
from sbp_jax.reasoning.sft_data import render

LIMIT = 100
MAX_RECHECKS_PER_STEP, MAX_RECHECKS = 2, 3  # bounds the sequence length


def make_problem(rng: np.random.Generator, min_ops: int, max_ops: int,
                 p_recheck: float = 0.0) -> dict:
  n_ops = int(rng.integers(min_ops, max_ops + 1))
  value = int(rng.integers(1, 10))
  expr, lines, rechecks = str(value), [], 0
  for _ in range(n_ops):
    d = int(rng.integers(2, 10))
    op = "*" if rng.random() < 0.4 and value * d < LIMIT else "+"
    if op == "+" and value + d >= LIMIT:
      break
    new = value * d if op == "*" else value + d
    expr += f"{op}{d}"
    lines.append(f"{value}{op}{d}={new}\n")
    for _ in range(MAX_RECHECKS_PER_STEP):  # k re-checks in a row with probability p^k
      if rechecks >= MAX_RECHECKS or not rng.random() < p_recheck:
        break
      lines.append(f"Wait, {value}{op}{d}={new}\n")
      rechecks += 1
    value = new
  return {"question": f"Left to right: {expr}", "reasoning": "".join(lines),
          "answer": str(value), "steps": len(expr) // 2}


def make_splits(n_train: int, n_test: int, seed: int, min_ops: int = 2, max_ops: int = 5,
                p_recheck: float = 0.0) -> dict[str, list[dict]]:
  """Disjoint train/test lists of problems, a pure function of the arguments."""
  rng = np.random.default_rng(seed)
  seen: set[str] = set()
  out = {"train": [], "test": []}
  tries = 0
  for split, n in (("test", n_test), ("train", n_train)):
    while len(out[split]) < n:
      tries += 1
      if tries > 50 * (n_train + n_test) + 1000:
        raise ValueError(f"Could not find {n_train + n_test} distinct problems with "
                         f"max_ops={max_ops}; ask for fewer or allow more operations.")
      p = make_problem(rng, min_ops, max_ops, p_recheck)
      if p["question"] in seen:
        continue
      seen.add(p["question"])
      p["id"] = f"{split}-{len(out[split]):05d}"
      out[split].append(p)
  return out


def write_splits(out_dir: str, n_train: int, n_test: int, seed: int, min_ops: int = 2,
                 max_ops: int = 5, p_recheck: float = 0.0) -> dict[str, str]:
  """Writes out_dir/{train,test}.jsonl unless both exist (a re-run reuses them)."""
  paths = {s: os.path.join(out_dir, f"{s}.jsonl") for s in ("train", "test")}
  if not all(fileio.exists(p) for p in paths.values()):
    splits = make_splits(n_train, n_test, seed, min_ops, max_ops, p_recheck)
    for s, p in paths.items():
      write_jsonl(p, splits[s])
  return paths


def tokenizer_texts(records, template) -> list[str]:
  """The rendered SFT sequences, so the tokenizer learns the prompt's words too."""
  return [r["prompt"] + r["response"] for r in (render(x, template) for x in records)]
