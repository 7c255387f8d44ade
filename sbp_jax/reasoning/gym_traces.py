"""Exact reasoning traces for reasoning-gym questions, written by program (s1 SFT data).

s1 fine-tunes on questions paired with reasoning traces (thesis 3.1, B.4.5). For a
135M model on CPU we write the traces ourselves, one checked step per line, from
what the question states:
  - basic_arithmetic, chain_sum, products: the expression (reasoning-gym's
    `metadata.expression`) evaluated operation by operation in precedence order;
    a product of multi-digit numbers is split by place value (the second factor into
    partial products, each partial product by the digits of the first);
  - leg_counting: animal by animal (count x legs each), then the running sum;
  - aiw: the sibling and friend puzzles, read off the question text. Its colleague
    puzzle has no trace: its gold (Alice's female colleagues + 1) leaves out the women
    around Bob, although the question puts Matilda among Bob's colleagues, who are all
    colleagues of each other; no sound derivation reaches that gold.
`trace(row)` returns (reasoning, value) or None. `make_records` keeps a question only
when the trace's value is its gold answer (answers.is_correct), so nothing unchecked
is trained on, and counts what it dropped and why. `with_rechecks` may close a trace
with "Wait, let me check: <its last computed line>", the string budget forcing appends.
"""

from __future__ import annotations

import ast
import random
import re
from collections import Counter
from typing import Callable, Iterable, Mapping, Sequence

from sbp_jax.reasoning import answers

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def place_parts(n: int) -> list[int]:
  """n >= 0 split by place value, largest first, zero digits left out: 507 -> [500, 7]."""
  digits = str(n)
  parts = [int(d) * 10 ** (len(digits) - 1 - i) for i, d in enumerate(digits) if d != "0"]
  return parts or [0]


def partial_product(a: int, p: int) -> str:
  """a >= 0 times p (one digit, then zeros) on one line, a split by place value when it has
  several digits: '67 * 20 = 60 * 20 + 7 * 20 = 1200 + 140 = 1340'."""
  parts = place_parts(a)
  if len(parts) == 1:
    return f"{a} * {p} = {a * p}"
  return (f"{a} * {p} = " + " + ".join(f"{q} * {p}" for q in parts) + " = "
          + " + ".join(str(q * p) for q in parts) + f" = {a * p}")


def product_lines(a: int, b: int) -> list[str]:
  """Lines that multiply a by b: the magnitudes by place value of b, then the sign."""
  m, parts = abs(a) * abs(b), place_parts(abs(b))
  if abs(a) < 10 and len(parts) == 1:
    return [f"{a} * {b} = {a * b}"]
  lines = []
  if len(parts) > 1:
    lines.append(f"{abs(a)} * {abs(b)} = " + " + ".join(f"{abs(a)} * {p}" for p in parts))
  lines += [partial_product(abs(a), p) for p in parts]
  total = abs(a) * parts[0]
  for p in parts[1:]:
    lines.append(f"{total} + {abs(a) * p} = {total + abs(a) * p}")
    total += abs(a) * p
  if a < 0 or b < 0:  # the sign comes last, once the magnitude is known
    lines.append(f"{a} * {b} = {a * b}")
  return lines


def _value(node: ast.AST, lines: list[str]) -> int | None:
  """The integer value of an expression node, appending one line per operation (operands
  first, so precedence and parentheses decide the order); None for anything but integer
  literals, unary minus and + - * with exact /."""
  if isinstance(node, ast.Constant) and type(node.value) is int:
    return node.value
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
    v = _value(node.operand, lines)
    if v is not None and not isinstance(node.operand, ast.Constant):  # -(...) is a step too
      lines.append(f"-({v}) = {-v}")
    return None if v is None else -v
  if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
    a = _value(node.left, lines)
    b = _value(node.right, lines)
    if a is None or b is None:
      return None
    op = _OPS[type(node.op)]
    if op == "*":
      lines += product_lines(a, b)
      return a * b
    if op == "/":
      if b == 0 or a % b:
        return None  # not exact: the question means something our steps do not say
      out = a // b
    else:
      out = a + b if op == "+" else a - b
    lines.append(f"{a} {op} {b} = {out}")
    return out
  return None


def expression_trace(expr: str) -> tuple[str, int] | None:
  """(one line per operation, the value) of an integer expression like '-7 + -6 * -9'."""
  try:
    tree = ast.parse(expr.strip().rstrip("="), mode="eval")
  except SyntaxError:
    return None
  lines = []
  value = _value(tree.body, lines)
  if value is None:
    return None
  if not lines:  # a lone number
    lines = [f"The expression is just {value}."]
  return "\n".join(lines), value


def legs_trace(animals: Mapping[str, int], legs: Mapping[str, int]) -> tuple[str, int] | None:
  """Animal by animal, count x legs each, then the running sum; None for an unknown animal."""
  if not animals or any(a not in legs for a in animals):
    return None
  counts = [(a, int(n), int(legs[a])) for a, n in animals.items()]
  lines = [f"{a}: {n} x {k} legs = {n * k}" for a, n, k in counts]
  total = counts[0][1] * counts[0][2]
  for _, n, k in counts[1:]:
    lines.append(f"{total} + {n * k} = {total + n * k}")
    total += n * k
  lines.append(f"In total {total} legs.")
  return "\n".join(lines), total


_SIBLINGS = (
    re.compile(r"(?P<girl>\w+) has (?P<brothers>\d+) brothers and she also has (?P<sisters>\d+) "
               r"sisters\. How many sisters does (?P<boy>\w+)'s brother have\?"),
    re.compile(r"(?P<girl>\w+) has (?P<sisters>\d+) sisters and she also has (?P<brothers>\d+) "
               r"brothers\. How many sisters does (?P<boy>\w+)'s brother have\?"))
_FRIENDS = re.compile(
    r"(?P<girl>\w+) has (?P<male>\d+) male friends and she also has (?P<female>\d+) female "
    r"friends\. They all are friends with each other and have no other friends aside\. How many "
    r"female friends does (?P<boy>\w+), a male friend of (?P=girl), have\?")


def aiw_trace(question: str) -> tuple[str, int] | None:
  """The sibling and friend puzzles; None for any other question (colleagues included)."""
  for pattern in _SIBLINGS:
    m = pattern.search(question)
    if m:
      g, s = m["girl"], int(m["sisters"])
      return (f"{g} is a girl with {s} sisters, so the family has {s} + 1 = {s + 1} girls.\n"
              f"A brother in that family has every one of the girls as a sister.\n"
              f"So the brother has {s + 1} sisters."), s + 1
  m = _FRIENDS.search(question)
  if m:
    g, b, f = m["girl"], m["boy"], int(m["female"])
    return (f"Everyone in {g}'s group is friends with everyone else, and {b} is in it.\n"
            f"The women in the group are {g} and her {f} female friends: {f} + 1 = {f + 1}.\n"
            f"So {b} has {f + 1} female friends."), f + 1
  return None


def _legs_table() -> Mapping[str, int]:
  from reasoning_gym.arithmetic.leg_counting import ANIMALS  # pylint: disable=g-import-not-at-top
  return ANIMALS


def _from_expression(row: Mapping) -> tuple[str, int] | None:
  expr = (row.get("metadata") or {}).get("expression")
  return expression_trace(expr) if isinstance(expr, str) else None


TRACERS: dict[str, Callable[[Mapping], tuple[str, int] | None]] = {
    "basic_arithmetic": _from_expression,
    "chain_sum": _from_expression,
    "products": _from_expression,
    "leg_counting": lambda row: legs_trace((row.get("metadata") or {}).get("animals") or {},
                                           _legs_table()),
    "aiw": lambda row: aiw_trace(row["question"]),
}


def trace(row: Mapping) -> tuple[str, int] | None:
  """(reasoning, value) for a question record of gym_questions.make_questions, or None."""
  tracer = TRACERS.get(row.get("task", ""))
  return tracer(row) if tracer else None


def make_records(rows: Iterable[Mapping], exclude: Sequence[str] = (), p_recheck: float = 0.0,
                 seed: int = 0) -> tuple[list[dict], dict]:
  """SFT records {id, task, question, reasoning, answer} of the rows whose trace reaches
  their gold, and {task: {kept, no_trace, wrong, held_out}} counts. `exclude`: question
  texts that must not be trained on (the evaluation's); `p_recheck`: see with_rechecks
  (each record draws from its own generator, seeded by `seed` and its id)."""
  held = set(exclude)
  stats: dict[str, Counter] = {}
  out = []
  for row in rows:
    count = stats.setdefault(row["task"], Counter(kept=0, no_trace=0, wrong=0, held_out=0))
    if row["question"] in held:
      count["held_out"] += 1
      continue
    t = trace(row)
    if t is None:
      count["no_trace"] += 1
      continue
    reasoning, value = t
    if not answers.is_correct(str(value), str(row["answer"])):
      count["wrong"] += 1
      continue
    count["kept"] += 1
    if p_recheck:
      reasoning = with_rechecks(reasoning, p_recheck, random.Random(f"{seed}:{row['id']}"))
    out.append(dict(id=f"train-{row['id']}", task=row["task"], question=row["question"],
                    reasoning=reasoning, answer=str(value)))
  return out, {k: dict(v) for k, v in stats.items()}


def with_rechecks(reasoning: str, p: float, rng: random.Random, most: int = 2) -> str:
  """The trace with up to `most` closing re-checks of its last computed line, the k-th with
  probability p^k: "Wait, let me check: 1340 + 536 = 1876". Budget forcing appends "Wait"
  where the model would end its thinking, so a trained model has seen what follows it."""
  last = next((line for line in reversed(reasoning.split("\n")) if "=" in line), None)
  if last is None:
    return reasoning
  lines = [reasoning]
  while len(lines) <= most and rng.random() < p:
    lines.append(f"Wait, let me check: {last.rstrip('.')}")
  return "\n".join(lines)
