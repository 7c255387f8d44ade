"""Questions with checkable answers from reasoning-gym's procedural generators.

reasoning-gym (PyPI `reasoning-gym`, Apache-2.0) builds arithmetic and logic
puzzles from a seed, so a question set is reproducible offline without any
download. `make_questions` draws `n` questions spread over the configured
tasks (interleaved, so a `limit` keeps the mix) and writes the JSON lines that
the `budget_eval` job reads: {"id", "question", "answer", "task", "metadata"}.

Every gold answer is checked twice before it is written: reasoning-gym's own
`score_answer` must give it full marks, and our extractor
(sbp_jax.reasoning.answers) must read it back as itself. Tasks whose answers
our extractor cannot compare (free-form text) are rejected by name, so the
sweep never scores against a gold it misreads.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from sbp_jax.reasoning import answers


def _task_fields(spec: Mapping) -> tuple[str, float, dict]:
  spec = dict(spec)
  name = spec.pop("name", None)
  if not isinstance(name, str) or not name:
    raise ValueError(f"gym task {spec!r} needs a reasoning-gym dataset `name` "
                     "(e.g. 'basic_arithmetic').")
  weight = float(spec.pop("weight", 1.0))
  return name, weight, spec


def counts(weights: Sequence[float], n: int) -> list[int]:
  """n split over tasks in proportion to weights (largest remainders; sums to n)."""
  if n < 0 or not weights or min(weights) <= 0:
    raise ValueError(f"need n >= 0 and positive task weights, got n={n}, weights={weights}.")
  total = sum(weights)
  exact = [n * w / total for w in weights]
  out = [int(x) for x in exact]
  for i in sorted(range(len(weights)), key=lambda i: out[i] - exact[i])[:n - sum(out)]:
    out[i] += 1
  return out


def make_questions(tasks: Sequence[Mapping], n: int, seed: int, suffix: str = "") -> list[dict]:
  """n question records over `tasks` ([{name, weight, **dataset kwargs}]), deterministic
  in (tasks, n, seed). `suffix` is appended to each question (an answer-format hint)."""
  import reasoning_gym  # pylint: disable=g-import-not-at-top
  specs = [_task_fields(t) for t in tasks]
  per_task = []
  for (name, _, kwargs), k, t in zip(specs, counts([w for _, w, _ in specs], n), range(len(specs))):
    if k == 0:
      per_task.append([])
      continue
    try:
      ds = reasoning_gym.create_dataset(name, seed=seed + 1009 * t, size=k, **kwargs)
    except Exception as e:  # unknown name or bad kwargs: say which task
      raise ValueError(f"gym task {name!r} with {kwargs}: reasoning-gym could not build it "
                       f"({type(e).__name__}: {e}).") from None
    rows = []
    for i in range(k):
      entry = ds[i]
      gold = str(entry["answer"])
      if answers.kind_of(gold) == "text":
        raise ValueError(f"gym task {name!r}: gold answer {gold!r} is free text, which "
                         "budget_eval cannot compare; pick tasks with numeric or A-D answers.")
      if ds.score_answer(gold, entry) != 1.0 or not answers.is_correct(gold, gold):
        raise ValueError(f"gym task {name!r} item {i}: gold {gold!r} does not score as correct.")
      rows.append(dict(id=f"{name}-{i}", question=entry["question"] + suffix, answer=gold,
                       task=name, metadata=_jsonable(entry.get("metadata", {}))))
    per_task.append(rows)
  # Interleave tasks so the first m questions keep the mix.
  out = []
  for i in range(max((len(r) for r in per_task), default=0)):
    out += [r[i] for r in per_task if i < len(r)]
  return out


def _jsonable(x):
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  return x if isinstance(x, (str, int, float, bool)) or x is None else str(x)
