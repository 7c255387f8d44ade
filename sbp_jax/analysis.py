"""Readers and plots for the analysis notebooks (notebooks/*.ipynb).

Each reader takes the files a job writes, as it writes them, and raises an
error naming the file and what is missing; each plot draws onto a matplotlib
Axes passed in, so a notebook arranges the figure and the functions stay
testable without one. Nothing here imports JAX.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Mapping, Sequence

import numpy as np

from sbp_jax import fileio

# -- small file helpers --------------------------------------------------------------------


def read_json(path: str, what: str = "file"):
  if not fileio.exists(path):
    raise FileNotFoundError(f"{what} {path!r} does not exist; set the notebook's parameters cell "
                            "to the run's outputs.")
  return fileio.read_json(path)


def _need(obj: Mapping, keys: Sequence[str], path: str, writer: str) -> None:
  missing = [k for k in keys if k not in obj]
  if missing:
    raise ValueError(f"{path}: missing field(s) {missing}; expected the output of {writer}.")


# -- training curves -----------------------------------------------------------------------


def load_history(path: str) -> dict:
  """history.json of a training run (a file or its workdir) ->
  {"loss": {step: loss}, "eval": {step: {loss, perplexity, ...}}} with int steps, sorted."""
  if fileio.isdir(path):
    path = os.path.join(path, "history.json")
  h = read_json(path, "training history")
  _need(h, ("loss", "eval"), path, "sbp_jax.train.loop (history.json)")
  return {k: {int(s): h[k][s] for s in sorted(h[k], key=int)} for k in ("loss", "eval")}


def history_series(history: dict, key: str = "loss") -> tuple[np.ndarray, np.ndarray]:
  """(steps, values): key "loss" for training loss, or an eval metric ("perplexity", ...)."""
  if key == "loss":
    d = history["loss"]
    return np.array(list(d), np.int64), np.array(list(d.values()), np.float64)
  d = {s: v[key] for s, v in history["eval"].items() if key in v}
  return np.array(list(d), np.int64), np.array(list(d.values()), np.float64)


def load_tb_scalars(logdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Every scalar tag of the TensorBoard event files under logdir -> (steps, values).

  The trainer writes tags "train/<metric>" and "eval/<metric>" (sbp_jax.train.metrics).
  flax's writer stores scalars as tensors, so both event kinds are read.
  """
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  if not fileio.find(logdir, "events.out.tfevents.*"):
    raise FileNotFoundError(f"no TensorBoard event files under {logdir!r}; the trainer writes "
                            "them to <workdir>/tb.")
  acc = event_accumulator.EventAccumulator(
      logdir, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
  acc.Reload()
  tags = acc.Tags()
  out = {}
  for tag in tags.get("scalars", []):
    ev = acc.Scalars(tag)
    out[tag] = (np.array([e.step for e in ev], np.int64), np.array([e.value for e in ev]))
  for tag in tags.get("tensors", []):
    ev = acc.Tensors(tag)
    vals = [_tensor_scalar(e.tensor_proto) for e in ev]
    keep = [i for i, v in enumerate(vals) if v is not None]
    if keep:
      out[tag] = (np.array([ev[i].step for i in keep], np.int64),
                  np.array([vals[i] for i in keep], np.float64))
  return dict(sorted(out.items()))


def _tensor_scalar(proto):
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  a = tensor_util.make_ndarray(proto)
  return float(a) if a.size == 1 and np.issubdtype(a.dtype, np.number) else None


def training_runs(run_dir: str) -> dict[str, str]:
  """Training workdirs in a run: run_dir itself if it trained, else its sub-directories
  holding a history.json (the SBP experiment's baseline / joint / oracle / synth_tune ...),
  named by directory."""
  if fileio.exists(os.path.join(run_dir, "history.json")):
    return {os.path.basename(os.path.normpath(run_dir)): run_dir}
  subs = [os.path.dirname(p) for p in fileio.glob(os.path.join(run_dir, "*", "history.json"))]
  if not subs:
    raise FileNotFoundError(f"no history.json in {run_dir!r} or its sub-directories; point the "
                            "notebook at a training run's workdir.")
  return {os.path.basename(s): s for s in subs}


def plot_curves(ax, series: Mapping[str, tuple], xlabel: str = "step", ylabel: str = "",
                logy: bool = False, style: str = "-"):
  """series: label -> (x, y)."""
  for label, (x, y) in series.items():
    ax.plot(x, y, style, label=label, lw=1.2, ms=4)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if logy:
    ax.set_yscale("log")
  ax.grid(alpha=0.3)
  if series:
    ax.legend(fontsize=8)
  return ax


# -- Table 3.2: eval results ---------------------------------------------------------------


ARM_ORDER = ("baseline", "SBP", "oracle")


def find_eval_results(run_dir: str) -> dict[str, str]:
  """{arm: results.json} of the SBP experiment's eval stage (<run>/eval/<arm>/results.json),
  baseline first and oracle last; a single eval run gives {its name: results.json}."""
  found = {os.path.basename(os.path.dirname(p)): p
           for p in fileio.glob(os.path.join(run_dir, "eval", "*", "results.json"))}
  if not found and fileio.exists(os.path.join(run_dir, "results.json")):
    return {os.path.basename(os.path.normpath(run_dir)): os.path.join(run_dir, "results.json")}
  rank = {a: i for i, a in enumerate(ARM_ORDER)}
  return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], 1.5), kv[0])))


def load_eval_results(path: str) -> dict:
  r = read_json(path, "eval results")
  _need(r, ("tasks",), path, "the eval job (sbp_jax.eval.jobs.run_eval, results.json)")
  for name, t in r["tasks"].items():
    _need(t, ("kind", "primary", "metrics"), f"{path} (task {name!r})", "the eval job")
  return r


def comparison(results: Mapping[str, str], baseline: str = "", oracle: str = "") -> dict:
  """Table 3.2 data (sbp_jax.eval.report.combine) from {label: results.json path}.
  baseline defaults to the first label; oracle to "oracle" when present."""
  from sbp_jax.eval import report  # pylint: disable=g-import-not-at-top
  if not results:
    raise ValueError("no eval results given; run the eval stage (or job) first.")
  runs = [(label, load_eval_results(p)) for label, p in results.items()]
  baseline = baseline or runs[0][0]
  if not oracle and "oracle" in results and baseline != "oracle":
    oracle = "oracle"
  return report.combine(runs, baseline, oracle)


def plot_comparison(ax, table: dict, kind: str = "accuracy"):
  """Grouped bars of each run's difference from the baseline for one block of Table 3.2
  (kind "accuracy": points of QA accuracy; "perplexity": perplexity, lower is better)."""
  rows = [r for r in table["rows"] if r["kind"] == kind]
  base, others = table["baseline"], table["columns"][1:]
  if kind == "accuracy" and table.get("average_accuracy"):
    rows = rows + [dict(label="Average", values=table["average_accuracy"])]
  width = 0.8 / max(len(others), 1)
  xs = np.arange(len(rows))
  for i, c in enumerate(others):
    ax.bar(xs + (i - (len(others) - 1) / 2) * width,
           [r["values"][c] - r["values"][base] for r in rows], width, label=c)
  ax.axhline(0, color="black", lw=0.8)
  ax.set_xticks(xs, [r["label"] for r in rows], rotation=30, ha="right", fontsize=8)
  unit = "accuracy points" if kind == "accuracy" else "perplexity"
  ax.set_ylabel(f"{unit} vs {base}")
  ax.grid(alpha=0.3, axis="y")
  if others:
    ax.legend(fontsize=8)
  return ax


# -- SBP pairs -----------------------------------------------------------------------------


PAIR_FIELDS = ("alpha", "queries", "neighbours", "kept", "dropped", "mean_similarity_kept",
               "mean_similarity_random", "histogram")


def load_pair_stats(path: str) -> dict:
  """stats.json of the `pair` job (a file or the job's workdir)."""
  if fileio.isdir(path):
    path = os.path.join(path, "stats.json")
  s = read_json(path, "pair stats")
  _need(s, PAIR_FIELDS, path, "the pair job (sbp_jax.sbp.pairing.select.finalize_stats, stats.json)")
  h = s["histogram"]
  _need(h, ("edges", "counts"), path + " (histogram)", "the pair job")
  if len(h["edges"]) != len(h["counts"]) + 1:
    raise ValueError(f"{path}: histogram has {len(h['edges'])} edges for {len(h['counts'])} "
                     "bins; edges must be one longer.")
  return s


def pair_summary(stats: dict) -> str:
  n = max(stats["neighbours"], 1)
  lines = [f"{stats['queries']} query documents, {stats['neighbours']} neighbours searched; "
           f"{stats['kept']} pairs kept ({100 * stats['kept'] / n:.1f}%) at alpha={stats['alpha']}"]
  for reason, k in stats["dropped"].items():
    lines.append(f"  dropped {reason:<16} {k:>9} ({100 * k / n:.1f}%)")
  ks, rs = stats["mean_similarity_kept"], stats["mean_similarity_random"]
  lines.append(f"mean similarity: kept pairs {_num(ks)}, random pairs {_num(rs)} "
               f"(over {stats.get('random_pairs', '?')} random pairs)")
  return "\n".join(lines)


def _num(v) -> str:
  return "n/a" if v is None else f"{v:.3f}"


def plot_similarity_histogram(ax, stats: dict, logy: bool = True):
  """Similarity of every searched neighbour, with alpha and the kept / random means."""
  edges = np.asarray(stats["histogram"]["edges"], np.float64)
  counts = np.asarray(stats["histogram"]["counts"], np.float64)
  nz = np.flatnonzero(counts)
  lo = edges[nz[0]] if len(nz) else -1.0
  ax.stairs(counts, edges, fill=True, alpha=0.6, label="top-k neighbours")
  marks = [(stats["alpha"], "red", "-", "alpha"),
           (stats["mean_similarity_kept"], "green", "--", "mean of kept pairs"),
           (stats["mean_similarity_random"], "grey", ":", "mean of random pairs")]
  for v, color, ls, label in marks:
    if v is not None:
      ax.axvline(v, color=color, ls=ls, lw=1.2, label=f"{label} ({v:.2f})")
      lo = min(lo, v)
  ax.set_xlim(max(-1.0, lo - 0.1), 1.0)
  ax.set_xlabel("cosine similarity")
  ax.set_ylabel("neighbours")
  if logy and counts.max() > 0:
    ax.set_yscale("log")
  ax.legend(fontsize=8)
  return ax


# -- synthetic-data quality ----------------------------------------------------------------


QUALITY_COLUMNS = (("repetition", "Repetition"), ("duplicate", "Duplicate@N"),
                   ("pair_irrelevance", "Pair-irrelevance"), ("pair_copying", "Pair-copying"))
B1_COLUMNS = (("paired", "Paired docs"), ("random", "Random docs"),
              ("generated_sbp", "Generated (SBP)"), ("generated_random", "Generated (Random)"))


def load_quality(path: str) -> dict:
  """{"quality": {source: report}, "b1": {...}} from the SBP experiment's quality stage:
  <run>/quality/stage.json, the run's results.json, or the run directory."""
  if fileio.isdir(path):
    stage = os.path.join(path, "quality", "stage.json")
    path = stage if fileio.exists(stage) else os.path.join(path, "results.json")
  r = read_json(path, "quality report")
  if "stages" in r:  # the experiment's results.json
    if "quality" not in r["stages"]:
      raise ValueError(f"{path}: the experiment has no quality stage yet.")
    r = r["stages"]["quality"]
  _need(r, ("quality",), path, "the SBP experiment's quality stage (sbp_jax.sbp.experiment)")
  for name, rep in r["quality"].items():
    _need(rep, ("num_docs", "repetition", "duplicate"), f"{path} (source {name!r})",
          "sbp_jax.sbp.quality.quality_report")
  return dict(quality=r["quality"], b1=r.get("b1", {}))


def plot_quality(ax, report: Mapping[str, dict]):
  """Grouped bars of the Table 3.3 rates (%) per data source; missing columns are skipped."""
  names = list(report)
  width = 0.8 / max(len(names), 1)
  xs = np.arange(len(QUALITY_COLUMNS))
  for i, n in enumerate(names):
    vals = [100 * report[n][k] if report[n].get(k) is not None else np.nan
            for k, _ in QUALITY_COLUMNS]
    ax.bar(xs + (i - (len(names) - 1) / 2) * width, vals, width, label=n)
  ax.set_xticks(xs, [t for _, t in QUALITY_COLUMNS], fontsize=8)
  ax.set_ylabel("% of documents (lower is better)")
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=8)
  return ax


def plot_b1(ax, b1: Mapping[str, float]):
  """Table B.1: mean seed-output (or pair) embedding similarity."""
  cols = [(k, t) for k, t in B1_COLUMNS if b1.get(k) is not None]
  ax.bar([t for _, t in cols], [b1[k] for k, _ in cols],
         color=["tab:green", "tab:grey", "tab:blue", "tab:orange"][:len(cols)])
  for i, (k, _) in enumerate(cols):
    ax.annotate(f"{b1[k]:.2f}", (i, b1[k]), ha="center", va="bottom", fontsize=8)
  ax.set_ylabel("mean embedding similarity")
  ax.tick_params(axis="x", labelsize=8, labelrotation=15)
  ax.grid(alpha=0.3, axis="y")
  return ax


# -- EntiGraph scaling ---------------------------------------------------------------------


def load_qa_points(path: str) -> list[dict]:
  """(tokens, accuracy[, label]) points of a token sweep: CSV with a header, or a JSON list
  of objects. Accuracy is a fraction in [0, 1]."""
  if not fileio.exists(path):
    raise FileNotFoundError(f"QA points file {path!r} does not exist; write a CSV with columns "
                            "tokens,accuracy[,label] (or a JSON list of such objects).")
  if path.endswith(".json"):
    rows = read_json(path, "QA points")
    if not isinstance(rows, list):
      raise ValueError(f"{path}: expected a JSON list of {{tokens, accuracy}} objects.")
  else:
    with fileio.open_file(path, text=True, newline="") as f:
      rows = list(csv.DictReader(f))
  out = []
  for i, r in enumerate(rows, 2 if not path.endswith(".json") else 0):
    where = f"{path}:{i}" if not path.endswith(".json") else f"{path}[{i}]"
    try:
      tokens, acc = float(r["tokens"]), float(r["accuracy"])
    except (KeyError, TypeError, ValueError):
      raise ValueError(f"{where}: needs numeric 'tokens' and 'accuracy' fields, got {r!r}.") from None
    if not 0.0 <= acc <= 1.0:
      raise ValueError(f"{where}: accuracy={acc} is not a fraction in [0, 1].")
    out.append(dict(tokens=tokens, accuracy=acc, label=r.get("label") or ""))
  return sorted(out, key=lambda p: p["tokens"])


def qa_accuracy(summary_path: str, mode: str = "sample") -> float:
  """Accuracy of one mode from the entigraph_qa job's qa/summary.json."""
  s = read_json(summary_path, "QA summary")
  if mode not in s:
    raise ValueError(f"{summary_path}: no QA mode {mode!r} (has {sorted(s)}); set QA_MODE.")
  _need(s[mode], ("accuracy",), f"{summary_path} ({mode})", "sbp_jax.entigraph.qa.evaluate")
  return float(s[mode]["accuracy"])


def entigraph_demo_points(run_dir: str, mode: str = "sample") -> list[dict]:
  """The entigraph_demo run's two points: QA before CPT (0 synthetic tokens) and after
  CPT on the synthetic corpus (its manifest's token count)."""
  manifest = read_json(os.path.join(run_dir, "entigraph", "manifest.json"), "EntiGraph manifest")
  _need(manifest, ("tokens",), os.path.join(run_dir, "entigraph", "manifest.json"),
        "sbp_jax.entigraph.synth_corpus")
  return [dict(tokens=0.0, label="base",
               accuracy=qa_accuracy(os.path.join(run_dir, "qa_before", "qa", "summary.json"), mode)),
          dict(tokens=float(manifest["tokens"]), label="EntiGraph CPT",
               accuracy=qa_accuracy(os.path.join(run_dir, "qa_after", "qa", "summary.json"), mode))]


def fit_scaling(points: Sequence[dict], terms: int = 3, unit: float = 1e6):
  """The mixture-of-exponential fit (2.2) of accuracy against tokens / unit, with as many
  terms (at most `terms`) as the points determine; None with fewer than 3 points."""
  from sbp_jax.entigraph import theory  # pylint: disable=g-import-not-at-top
  terms = min(terms, (len(points) - 1) // 2)
  if terms < 1:
    return None
  x = np.array([p["tokens"] for p in points]) / unit
  y = np.array([p["accuracy"] for p in points])
  return theory.fit_mixture_of_exponentials(x, y, terms=terms)


def fit_formula(fit, unit_name: str = "M tokens") -> str:
  terms = " ".join(f"- {b:.4f} * {r:.4f}^x" for b, r in zip(fit.b, fit.r))
  return f"acc(x) = {fit.a:.4f} {terms}   (x in {unit_name}; rmse {fit.rmse:.4f})"


def plot_qa_scaling(ax, points: Sequence[dict], fit=None, unit: float = 1e6, logx: bool = True):
  """Accuracy points against synthetic tokens / unit and the fitted curve (symlog x: the
  base model sits at 0 tokens)."""
  x = np.array([p["tokens"] for p in points]) / unit
  y = 100 * np.array([p["accuracy"] for p in points])
  ax.plot(x, y, "o", label="QA accuracy")
  for xi, yi, p in zip(x, y, points):
    if p.get("label"):
      ax.annotate(p["label"], (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
  if fit is not None:
    pos = x[x > 0]
    lo = pos.min() / 3 if len(pos) else 1e-3
    grid = np.concatenate([[0.0], np.geomspace(lo, max(x.max(), lo) * 1.5, 200)])
    ax.plot(grid, 100 * fit(grid), "--", label=f"mixture-of-exponential fit ({len(fit.b)} terms)")
  if logx and (x > 0).any():
    ax.set_xscale("symlog", linthresh=float(x[x > 0].min()))
  name = {1.0: "tokens", 1e3: "thousands", 1e6: "millions", 1e9: "billions"}.get(unit)
  ax.set_xlabel(f"synthetic tokens ({name or f'x {unit:g}'})")
  ax.set_ylabel("QA accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return ax


# -- budget forcing ------------------------------------------------------------------------


def load_budget_eval(path: str) -> dict:
  """{sequential: [...], parallel: [...]} from the budget_eval job: its results.json, or
  the directory with results.json / sequential.csv / parallel.csv (workdir/budget_eval)."""
  if fileio.isdir(path):
    sub = os.path.join(path, "budget_eval")
    path = sub if fileio.isdir(sub) else path
    res = os.path.join(path, "results.json")
    if not fileio.exists(res):
      return dict(sequential=_read_csv(os.path.join(path, "sequential.csv")),
                  parallel=_read_csv(os.path.join(path, "parallel.csv")))
    path = res
  r = read_json(path, "budget_eval results")
  _need(r, ("sequential", "parallel"), path, "sbp_jax.reasoning.bf_eval (results.json)")
  for kind in ("sequential", "parallel"):
    for i, row in enumerate(r[kind]):
      _need(row, ("accuracy", "mean_thinking_tokens"), f"{path} ({kind}[{i}])",
            "sbp_jax.reasoning.bf_eval")
  return dict(sequential=r["sequential"], parallel=r["parallel"])


def _read_csv(path: str) -> list[dict]:
  if not fileio.exists(path):
    return []
  with fileio.open_file(path, text=True, newline="") as f:
    rows = list(csv.DictReader(f))
  return [{k: _parse_cell(v) for k, v in r.items()} for r in rows]


def _parse_cell(v: str):
  for cast in (int, float):
    try:
      return cast(v)
    except ValueError:
      pass
  return {"True": True, "False": False}.get(v, v)


def scaling_slope(rows: Sequence[dict]) -> float:
  """Least-squares accuracy points gained per doubling of mean thinking tokens."""
  pts = [(r["mean_thinking_tokens"], r["accuracy"]) for r in rows if r["mean_thinking_tokens"] > 0]
  if len(pts) < 2:
    return math.nan
  x, y = np.log2([p[0] for p in pts]), 100 * np.array([p[1] for p in pts])
  return float(np.polyfit(x, y, 1)[0]) if np.ptp(x) > 0 else math.nan


def plot_test_time_scaling(ax, sequential: Sequence[dict], parallel: Sequence[dict]):
  """Figure 4.5 on one axis: accuracy against mean thinking tokens per question for budget
  forcing (sequential) and majority voting (parallel; tokens summed over the votes)."""
  for rows, label, key, color, fmt in (
      (sequential, "sequential (budget forcing)", "setting", "tab:blue", str),
      (parallel, "parallel (majority vote)", "n", "tab:orange", lambda n: f"n={n}")):
    if not rows:
      continue
    rows = sorted(rows, key=lambda r: r["mean_thinking_tokens"])
    xs = [max(r["mean_thinking_tokens"], 1e-3) for r in rows]
    ys = [100 * r["accuracy"] for r in rows]
    ax.plot(xs, ys, "o-", color=color, label=label)
    for x, y, r in zip(xs, ys, rows):
      ax.annotate(fmt(r[key]), (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7,
                  color=color)
  ax.set_xscale("log")
  ax.set_xlabel("mean thinking tokens per question (log)")
  ax.set_ylabel("accuracy (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return ax


# -- figures -------------------------------------------------------------------------------


def save_figure(fig, fig_dir: str, name: str) -> str:
  """Writes fig as <fig_dir>/<name>.png when fig_dir is set; returns the path ("" if not)."""
  if not fig_dir:
    return ""
  path = os.path.join(fig_dir, name + ".png")
  with fileio.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
  return path
