"""Job `budget_eval`: test-time scaling of a reasoning model (thesis 4.4, Figure 4.5).

Over a questions file with gold answers it measures accuracy against thinking
tokens in two ways:
  (a) sequential: budget forcing (sbp_jax.generate.budget_forcing) at each
      setting of `budget_eval.sequential.settings` -- "max=N" caps thinking
      at N tokens, "wait=K" suppresses the end of thinking K times and appends
      "Wait", "none" lets the model stop on its own (under thinking_cap);
      greedy by default, as in the thesis;
  (b) parallel: n_max samples per question at temperature 1, then a majority
      vote over the first n for each n in `budget_eval.parallel.ns`; its
      thinking tokens are the total over the n samples (the compute spent).
Answers are read with sbp_jax.reasoning.answers (numeric or A-D); questions
without a gold answer (or `budget_eval.inline_questions`) are decoded and their
thinking lengths reported, with no accuracy. Writes
workdir/budget_eval/{sequential,parallel}.csv, results.json and scaling.png;
per-question generations are kept as JSONL, and a re-run skips finished files.

Delimiters, prompt and answer prefix come from `budget_eval.template` (the
SFT template, see sft_data), so the same job runs on a demo model with our
special tokens or on an imported chat model with ChatML delimiters.
"""

from __future__ import annotations

import csv
import logging
import os
from typing import Sequence

from sbp_jax import fileio, runs, validate
from sbp_jax.errors import InputError
from sbp_jax.fileio import iter_jsonl, read_jsonl, write_jsonl
from sbp_jax.generate import budget_forcing as bf
from sbp_jax.generate.budget_forcing import BudgetConfig, budget_force, parse_setting
from sbp_jax.generate.generate_job import check_model_inputs, make_sampler, model_config
from sbp_jax.generate.sampler import SamplingParams
from sbp_jax.reasoning import answers
from sbp_jax.reasoning.sft_data import budget_fields, template_from_config

log = logging.getLogger(__name__)


def load_questions(path: str, q_field: str = "question", a_field: str = "answer",
                   limit: int = 0) -> list[dict]:
  """[{id, question, gold}] from JSON lines (gold None where a row has no answer);
  errors name the file, line and field."""
  if not fileio.exists(path):
    raise InputError(f"budget_eval.questions={path!r} does not exist; expected JSON lines "
                     f"with {q_field!r} and {a_field!r} fields.")
  rows = []
  for n, r in iter_jsonl(path):
    if not isinstance(r.get(q_field), str):
      raise InputError(f"{path}:{n}: needs a string {q_field!r} field (and a gold {a_field!r} "
                       "to score; set budget_eval.question_field / answer_field for other "
                       "names).")
    rows.append({"id": str(r.get("id", n)), "question": r[q_field],
                 "gold": str(r[a_field]) if a_field in r else None, "line": n})
    if limit and len(rows) >= limit:
      break
  missing = [r["line"] for r in rows if r["gold"] is None]
  if missing and len(missing) < len(rows):  # some rows scored, some not: a broken file
    raise InputError(f"{path}:{missing[0]}: needs a string {q_field!r} and a gold {a_field!r} "
                     "field like the other rows (set budget_eval.question_field / answer_field "
                     "for other names).")
  return [{k: v for k, v in r.items() if k != "line"} for r in rows]


def answer_text(res, bc: BudgetConfig, tok, stops: Sequence[str]) -> str:
  """The generated answer without the forced delimiter/prefix, cut at the first stop string."""
  head = tok.decode(bf.delimiter_ids(tok, bc.think_end) +
                    (tok.encode(bc.answer_prefix) if bc.answer_prefix else []))
  text = res.answer[len(head):] if res.answer.startswith(head) else res.answer
  cuts = [text.find(s) for s in stops if s and s in text]
  return text[:min(cuts)] if cuts else text


def _scored(rows: Sequence[dict], results, bc: BudgetConfig, tok,
            stops: Sequence[str]) -> list[dict]:
  out = []
  for r, o in zip(rows, results):
    text = answer_text(o, bc, tok, stops)
    if r.get("gold") is None:  # unscored: thinking lengths only
      pred = correct = None
    else:
      kind, gold = answers.normalize_gold(r["gold"])
      pred = answers.extract(text, kind)
      correct = pred == gold
    out.append({**r, "thinking": o.thinking, "answer": text, "pred": pred,
                "correct": correct, "thinking_tokens": o.thinking_tokens,
                "waits": o.waits, "forced_end": o.forced_end})
  return out


def _batches(rows: Sequence, size: int):
  return [(b, rows[i:i + size]) for b, i in enumerate(range(0, len(rows), size))]


def run_batched(sampler, rows: Sequence[dict], bc: BudgetConfig, sp: SamplingParams,
                batch_size: int, seed: int, stops: Sequence[str]) -> list[dict]:
  """budget_force over rows in batches; one output dict per row, with its prediction."""
  out = []
  for b, chunk in _batches(rows, batch_size):
    res = budget_force(sampler, [r["question"] for r in chunk], bc, sp, seed=seed + 64 * b)
    out += _scored(chunk, res, bc, sampler.tokenizer, stops)
  return out


def greedy_trace(sampler, rows, trace_bc: BudgetConfig, sp: SamplingParams, batch_size: int,
                 seed: int, path: str) -> list[bf.Thinking]:
  """The greedy thinking phase under the most generous setting, kept in `path`."""
  if not fileio.exists(path):
    traces = []
    for b, chunk in _batches(rows, batch_size):
      prefix = bf.prompt_ids(sampler.tokenizer, [r["question"] for r in chunk], trace_bc)
      traces += bf.think(sampler, prefix, trace_bc, sp, seed + 64 * b)
      log.info("greedy trace: %d/%d questions", len(traces), len(rows))
    write_jsonl(path, [{"id": r["id"], "tokens": t.tokens, "ends": t.ends, "waits": t.waits,
                        "forced": t.forced} for r, t in zip(rows, traces)])
  saved = list(read_jsonl(path))
  if [t["id"] for t in saved] != [r["id"] for r in rows]:
    raise ValueError(f"{path} holds a trace of other questions; delete it to recompute.")
  return [bf.Thinking(t["tokens"], t["ends"], t["waits"], t["forced"]) for t in saved]


def run_from_trace(sampler, rows, traces, bc: BudgetConfig, sp: SamplingParams,
                   batch_size: int, seed: int, stops: Sequence[str]) -> list[dict]:
  """Like run_batched for a greedy setting, with thinking read off the trace (bf.from_trace);
  only the answer phase is decoded."""
  tok = sampler.tokenizer
  wait_len = len(tok.encode(bc.wait))
  thoughts = [bf.from_trace(t, bc, wait_len) for t in traces]
  out = []
  for b, chunk in _batches(list(zip(rows, thoughts)), batch_size):
    prefix = bf.prompt_ids(tok, [r["question"] for r, _ in chunk], bc)
    res = bf.answer(sampler, prefix, [t for _, t in chunk], bc, sp, seed + 64 * b)
    out += _scored([r for r, _ in chunk], res, bc, tok, stops)
  return out


def _name(spec: str) -> str:
  return spec.replace(",", "_").replace("=", "") or "none"


def setting_path(out_dir: str, spec: str) -> str:
  """The per-question results (JSON lines) of a sequential setting under out_dir."""
  return os.path.join(out_dir, "sequential", _name(spec) + ".jsonl")


def sequential(sampler, rows, e, base: dict, out_dir: str, seed: int) -> list[dict]:
  """One row per setting. Greedy settings without a minimum share one thinking decode
  (`sequential.shared_trace`, default on): a trace under the most extensions and the
  thinking cap, which each setting's thinking is read off before its answer phase."""
  s = e.sequential
  sp = SamplingParams(temperature=float(s.temperature), top_p=float(s.get("top_p", 1.0)))
  bcs = {spec: BudgetConfig(**base, **parse_setting(spec)) for spec in s.settings}
  # The trace thinks as long as the most generous setting allows.
  trace_bc = BudgetConfig(**{**base, "thinking_cap": max(
      max(bf.budget_of(bc) for bc in bcs.values()), 1)},
                          num_waits=max(bc.num_waits for bc in bcs.values()))
  shared = bool(s.get("shared_trace", True)) and sp.temperature == 0
  table, traces = [], None
  for spec, bc in bcs.items():
    path = setting_path(out_dir, spec)
    from_trace = shared and bf.derivable(bc, trace_bc)
    if not fileio.exists(path):
      if from_trace:
        traces = traces or greedy_trace(sampler(), rows, trace_bc, sp, e.batch_size, seed,
                                        os.path.join(out_dir, "sequential", "trace.jsonl"))
        res = run_from_trace(sampler(), rows, traces, bc, sp, e.batch_size, seed,
                             e.answer_stops)
      else:
        res = run_batched(sampler(), rows, bc, sp, e.batch_size, seed, e.answer_stops)
      write_jsonl(path, res)
      log.info("setting %s: %d questions done", spec, len(res))
    res = list(read_jsonl(path))
    table.append(dict(setting=spec, max_thinking=bc.max_thinking, waits=bc.num_waits,
                      n=len(res), accuracy=_accuracy(res),
                      mean_thinking_tokens=sum(r["thinking_tokens"] for r in res) / len(res),
                      max_thinking_tokens=max(r["thinking_tokens"] for r in res),
                      forced=sum(r["forced_end"] for r in res),
                      mean_waits=sum(r["waits"] for r in res) / len(res),
                      from_trace=from_trace))
  return table


def _accuracy(res: Sequence[dict]) -> float | None:
  """Mean correctness over the scored rows; None when no row has a gold answer."""
  scored = [r["correct"] for r in res if r.get("correct") is not None]
  return sum(scored) / len(scored) if scored else None


def vote_table(samples: Sequence[dict], ns: Sequence[int]) -> list[dict]:
  """samples: per question {gold, preds: [...], thinking_tokens: [...]} in sample order."""
  table = []
  for n in ns:
    acc = tot = 0.0
    for q in samples:
      if len(q["preds"]) < n:
        raise ValueError(f"question {q['id']!r} has {len(q['preds'])} samples, fewer than n={n}.")
      kind, gold = answers.normalize_gold(q["gold"])
      acc += answers.majority_vote(q["preds"][:n]) == gold
      tot += sum(q["thinking_tokens"][:n])
    k = len(samples)
    table.append(dict(n=n, accuracy=acc / k, mean_thinking_tokens=tot / k,
                      mean_thinking_per_sample=tot / k / n))
  return table


def parallel(sampler, rows, e, base: dict, out_dir: str, seed: int) -> list[dict]:
  p = e.parallel
  ns = sorted(int(n) for n in p.ns)
  n_max = ns[-1]
  bc = BudgetConfig(**base, **parse_setting(p.setting))
  sp = SamplingParams(temperature=float(p.temperature), top_p=float(p.get("top_p", 1.0)))
  # `parallel.limit`: vote on the first questions only (16 samples each cost 16 runs).
  rows = rows[:int(p.get("limit", 0))] if p.get("limit", 0) else rows
  # One part per `questions_per_part` questions, so a long run resumes where it stopped.
  per = max(1, int(p.questions_per_part))
  samples = []
  for part, start in enumerate(range(0, len(rows), per)):
    path = os.path.join(out_dir, "parallel", f"part-{part:05d}.jsonl")
    if not fileio.exists(path):
      chunk = rows[start:start + per]
      flat = [r for r in chunk for _ in range(n_max)]
      res = run_batched(sampler(), flat, bc, sp, e.batch_size, seed + 100_003 * (part + 1),
                        e.answer_stops)
      own = [res[i * n_max:(i + 1) * n_max] for i in range(len(chunk))]  # one question's samples
      write_jsonl(path, [{**r, "preds": [x["pred"] for x in xs],
                          "answers": [x["answer"] for x in xs],
                          "thinking_tokens": [x["thinking_tokens"] for x in xs]}
                         for r, xs in zip(chunk, own)])
    samples += list(read_jsonl(path))
    log.info("parallel: %d/%d questions sampled", len(samples), len(rows))
  return vote_table(samples, ns)


def _write_csv(path: str, table: list[dict]) -> None:
  with fileio.atomic_open(path) as f:
    w = csv.DictWriter(f, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)


def format_tables(seq: list[dict], par: list[dict]) -> str:
  lines = ["Sequential scaling (budget forcing)",
           f"{'setting':<14}{'mean think':>11}{'max think':>10}{'forced':>8}{'waits':>7}"
           f"{'accuracy':>10}"]
  acc = lambda a: f"{a:>10.3f}" if a is not None else f"{'-':>10}"
  lines += [f"{r['setting']:<14}{r['mean_thinking_tokens']:>11.1f}{r['max_thinking_tokens']:>10}"
            f"{r['forced']:>8}{r['mean_waits']:>7.2f}{acc(r['accuracy'])}" for r in seq]
  lines += ["", "Parallel scaling (majority vote)",
            f"{'n':>4}{'think/sample':>14}{'total think':>13}{'accuracy':>10}"]
  lines += [f"{r['n']:>4}{r['mean_thinking_per_sample']:>14.1f}{r['mean_thinking_tokens']:>13.1f}"
            f"{r['accuracy']:>10.3f}" for r in par]
  return "\n".join(lines)


def plot(seq: list[dict], par: list[dict], path: str, title: str = "") -> None:
  """Figure 4.5's shape: (a) sequential budget forcing, (b) parallel majority vote."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  for ax, rows, label, key, lab in (
      (axes[0], seq, "(a) Sequential scaling via budget forcing", "setting", str),
      (axes[1], par, "(b) Parallel scaling via majority voting", "n", lambda n: f"n={n}")):
    if rows:
      rows = sorted(rows, key=lambda r: r["mean_thinking_tokens"])  # a line left to right
      xs = [r["mean_thinking_tokens"] for r in rows]
      ys = [100 * (r["accuracy"] or 0.0) for r in rows]
      ax.plot(xs, ys, "o-", color="tab:blue" if key == "setting" else "tab:orange")
      for x, y, r in zip(xs, ys, rows):
        ax.annotate(lab(r[key]), (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
    ax.set_title(label, fontsize=10)
    ax.set_xlabel("average thinking tokens per question")
    ax.grid(alpha=0.3)
  if par and max(r["mean_thinking_tokens"] for r in par) > 8 * max(
      1.0, min(r["mean_thinking_tokens"] for r in par)):
    axes[1].set_xscale("log")
  axes[0].set_ylabel("accuracy (%)")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  with fileio.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=120)
  plt.close(fig)


def questions_of(e) -> list[dict]:
  """budget_eval.questions (a file), else budget_eval.inline_questions (unscored)."""
  if e.questions:
    rows = load_questions(e.questions, e.get("question_field", "question"),
                          e.get("answer_field", "answer"), int(e.get("limit", 0)))
  else:
    rows = [{"id": str(i), "question": q, "gold": None}
            for i, q in enumerate(e.get("inline_questions", ()) or ())]
  if not rows:
    raise InputError(f"budget_eval.questions={e.questions!r} holds no questions; set it to a "
                     "JSON lines file with 'question' (and gold 'answer') fields, or list "
                     "budget_eval.inline_questions.")
  if e.parallel.ns and any(r["gold"] is None for r in rows):
    raise InputError("budget_eval.parallel.ns is set, but majority voting needs a gold answer "
                     f"for every question ({e.get('answer_field', 'answer')!r} in "
                     f"{e.questions or 'budget_eval.inline_questions'}); add answers or set "
                     "budget_eval.parallel.ns=().")
  return rows


def check(config) -> dict:
  """Validates budget_eval before any decoding; returns the BudgetConfig fields shared by
  every setting."""
  e = config.budget_eval
  t = template_from_config(e.template)
  base = dict(**budget_fields(t), wait=e.wait, max_answer_tokens=int(e.max_answer_tokens),
              thinking_cap=int(e.thinking_cap))
  if e.get("answer_prefix") is not None:  # e.g. "Final Answer:" for a model not trained with it
    base["answer_prefix"] = e.answer_prefix
  validate.positive("budget_eval.batch_size", e.batch_size)
  for spec in tuple(e.sequential.settings) + ((e.parallel.setting,) if e.parallel.ns else ()):
    BudgetConfig(**base, **parse_setting(spec))  # each setting's numbers
  for n in e.parallel.ns:
    validate.positive("budget_eval.parallel.ns entry", n)
  if e.parallel.ns:
    validate.positive("budget_eval.parallel.questions_per_part", e.parallel.questions_per_part)
  return base


def check_context(config, rows: Sequence[dict], tok, base: dict) -> None:
  """Each question's longest decode fits the model's context: its prompt, the largest
  thinking budget of any setting, the end delimiter and answer prefix, and the answer."""
  e = config.budget_eval
  specs = tuple(e.sequential.settings) + ((e.parallel.setting,) if e.parallel.ns else ())
  budget = max((bf.budget_of(BudgetConfig(**base, **parse_setting(x))) for x in specs),
               default=0)
  bc = BudgetConfig(**base)
  suffix = len(bf.delimiter_ids(tok, bc.think_end)) + (
      len(tok.encode(bc.answer_prefix)) if bc.answer_prefix else 0)
  new = budget + suffix + bc.max_answer_tokens
  context = int(model_config(config).max_seq_len)
  for r, ids in zip(rows, bf.prompt_ids(tok, [r["question"] for r in rows], bc)):
    validate.context_fits(
        f"budget_eval question {r['id']!r}", len(ids), new, context,
        f"that is up to {budget} thinking tokens (budget_eval.thinking_cap or the largest "
        f"max= setting), {suffix} of the end delimiter and answer prefix and "
        f"budget_eval.max_answer_tokens={bc.max_answer_tokens}: lower these or shorten the "
        "question.")


def evaluate(sampler_fn, config, out_dir: str) -> dict:
  """Runs both sweeps with a lazily built sampler; returns {sequential, parallel} tables."""
  e = config.budget_eval
  rows = questions_of(e)
  base = check(config)
  cache = {}

  def sampler():
    if "s" not in cache:
      cache["s"] = sampler_fn()
    return cache["s"]

  seed = int(config.seed)
  seq = sequential(sampler, rows, e, base, out_dir, seed) if e.sequential.settings else []
  par = parallel(sampler, rows, e, base, out_dir, seed) if e.parallel.ns else []
  if seq:
    _write_csv(os.path.join(out_dir, "sequential.csv"), seq)
  if par:
    _write_csv(os.path.join(out_dir, "parallel.csv"), par)
  results = dict(questions=e.questions, n_questions=len(rows), sequential=seq, parallel=par,
                 n_parallel_questions=min(len(rows), int(e.parallel.get("limit", 0)) or len(rows)))
  fileio.write_json(os.path.join(out_dir, "results.json"), results)
  if e.get("plot", True):
    plot(seq, par, os.path.join(out_dir, "scaling.png"), e.get("title", ""))
  return results


IDENTITY_KEYS = ("model", "generate.checkpoint", "generate.model_json", "tokenizer",
                 "budget_eval", "seed")


def run(config, workdir: str) -> dict:
  """Job entry: model from config.generate (checkpoint / model_json) and config.tokenizer."""
  base = check(config)
  rows = questions_of(config.budget_eval)
  check_context(config, rows, check_model_inputs(config), base)
  runs.claim(workdir, "budget_eval", config, IDENTITY_KEYS, ("budget_eval",))
  out_dir = os.path.join(workdir, "budget_eval")
  results = evaluate(lambda: make_sampler(config), config, out_dir)
  print(f"{results['n_questions']} questions; the parallel vote over the first "
        f"{results['n_parallel_questions']}.")
  print(format_tables(results["sequential"], results["parallel"]))
  print(f"plot: {os.path.join(out_dir, 'scaling.png')}")
  return results
