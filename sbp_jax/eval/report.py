"""Tables: one run's results, and several runs in the layout of thesis Table 3.2.

Table 3.2 puts the baseline's absolute numbers in the first column and every
other run as a signed difference from it: perplexities (lower is better) in
one block, QA accuracies in percent (higher is better) in another, then the
average QA accuracy and, per method, the share of the oracle's average gain
that it recovers ((method - baseline) / (oracle - baseline)).
"""

from __future__ import annotations

import math
from typing import Sequence

SECTIONS = (("perplexity", "Perplexity on held-out data (lower is better)"),
            ("accuracy", "QA accuracy, % (higher is better)"))


def primary_value(task: dict) -> float:
  v = float(task["metrics"][task["primary"]])
  return 100.0 * v if task["kind"] == "accuracy" else v


def run_table(results: dict) -> str:
  """One checkpoint: every task's primary metric, then its other metrics."""
  rows = [("task", "format", "n", "metric", "value", "also")]
  for name, t in results["tasks"].items():
    m = t["metrics"]
    also = ", ".join(f"{k}={_fmt_metric(k, v)}" for k, v in m.items()
                     if k not in (t["primary"], "n"))
    rows.append((t.get("label", name), t["format"], str(m.get("n", "")), t["primary"],
                 _fmt_metric(t["primary"], m[t["primary"]]), also))
  return _grid(rows, right=(2, 4))


def _fmt_metric(k: str, v) -> str:
  if isinstance(v, int):
    return str(v)
  if k.startswith(("acc", "em")):
    return f"{100 * v:.2f}%"
  return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


def _grid(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
  widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
  out = []
  for r in rows:
    cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
    out.append("  ".join(cells).rstrip())
  return "\n".join(out)


def combine(runs: Sequence[tuple[str, dict]], baseline: str, oracle: str = "",
            tasks: Sequence[str] = ()) -> dict:
  """Table 3.2 data from [(label, results.json contents)]. Tasks default to the
  baseline's, in its order; every run must have them."""
  by = dict(runs)
  if baseline not in by:
    raise ValueError(f"table.baseline={baseline!r} is not one of the run labels {list(by)}.")
  if oracle and oracle not in by:
    raise ValueError(f"table.oracle={oracle!r} is not one of the run labels {list(by)}.")
  base = by[baseline]["tasks"]
  names = list(tasks) or list(base)
  labels = [baseline] + [l for l, _ in runs if l != baseline]
  for l in labels:
    missing = [n for n in names if n not in by[l]["tasks"]]
    if missing:
      raise ValueError(f"run {l!r} has no results for task(s) {missing}; evaluate it on the "
                       "same suite.")
  rows = []
  for kind, _ in SECTIONS:
    for n in names:
      if base[n]["kind"] != kind:
        continue
      vals = {l: primary_value(by[l]["tasks"][n]) for l in labels}
      rows.append(dict(task=n, label=base[n].get("label", n), kind=kind, values=vals))
  acc = [r for r in rows if r["kind"] == "accuracy"]
  avg = {l: sum(r["values"][l] for r in acc) / len(acc) for l in labels} if acc else {}
  share = {}
  if avg and oracle:
    gain = avg[oracle] - avg[baseline]
    share = {l: (avg[l] - avg[baseline]) / gain if gain else math.nan
             for l in labels if l not in (baseline, oracle)}
  return dict(columns=labels, baseline=baseline, oracle=oracle, rows=rows,
              average_accuracy=avg, oracle_share=share)


def format_table(t: dict) -> str:
  cols, base = t["columns"], t["baseline"]

  def cells(vals):
    return [f"{vals[base]:.2f}"] + [f"{vals[c] - vals[base]:+.2f}" for c in cols[1:]]

  rows = [["Benchmark"] + cols]
  for kind, title in SECTIONS:
    block = [r for r in t["rows"] if r["kind"] == kind]
    if not block:
      continue
    rows.append([f"-- {title}"] + [""] * len(cols))
    rows += [[r["label"]] + cells(r["values"]) for r in block]
  if t["average_accuracy"]:
    rows.append(["Average QA accuracy"] + cells(t["average_accuracy"]))
  if t["oracle_share"]:
    rows.append(["Share of oracle gain"] + [""] + [
        (f"{100 * t['oracle_share'][c]:.0f}%" if not math.isnan(t["oracle_share"][c]) else "n/a")
        if c in t["oracle_share"] else "" for c in cols[1:]])
  return _grid(rows, right=range(1, len(cols) + 1))
