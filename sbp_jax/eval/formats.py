"""Task formats: records -> scoring requests (or prompts) -> metrics.

Every format reduces to log-likelihood requests for the Scorer, except
generative QA, which decodes greedily with the sampler. Prompts are plain text
in one layout per format (below); few-shot examples come from a separate pool
(e.g. a train/dev split) or, without one, from the evaluated set minus the
item itself, drawn with a per-item seed so results do not depend on order.

  perplexity       every token of each document; token-weighted over documents
  lambada          " <last word>" given the passage before it: greedy accuracy
                   and perplexity of the last-word tokens
  mmlu             k worked examples + the question + its correct answer scored
                   as one text (perplexity, the thesis' readout), and the usual
                   accuracy: which letter " A".." D" is most likely after "Answer:"
  multiple_choice  " <choice>" after "Question: ...\\nAnswer:"; accuracy by raw
                   log-likelihood and by log-likelihood per character
  winogrande       partial scoring: the text after the blank, given the sentence
                   up to the blank filled with each option
  generative_qa    greedy answer after "Question: ...\\nAnswer:", cut at a newline;
                   normalised exact match against any reference answer
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Sequence

import numpy as np

from sbp_jax.eval.normalize import exact_match
from sbp_jax.eval.scorer import Request, Scorer, rolling_requests

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SHOT_SEP = "\n\n"

# Which metric each format reports first, and whether lower is better.
PRIMARY = {
    "perplexity": ("perplexity", "perplexity"),
    "lambada": ("perplexity", "perplexity"),
    "mmlu": ("perplexity", "perplexity"),
    "multiple_choice": ("acc", "accuracy"),
    "winogrande": ("acc", "accuracy"),
    "generative_qa": ("em", "accuracy"),
}


@dataclasses.dataclass
class Context:
  """What a task needs besides its records."""
  scorer: Scorer
  tokenizer: object
  prefix: tuple[int, ...] = ()  # token ids put before every text (e.g. (eos,)); () = none
  rolling_overlap: int = 0
  generate: Callable[[list[str], int], list[str]] | None = None  # prompts, max_new -> texts

  def encode(self, text: str) -> list[int]:
    return list(self.tokenizer.encode(text))

  def pair(self, context: str, continuation: str) -> Request:
    """Context + continuation as one request; the split follows the encoding of
    the whole string when it extends the context's own encoding (BPE merges)."""
    ctx = self.encode(context)
    whole = self.encode(context + continuation)
    if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
      cont = whole[len(ctx):]
    else:
      cont = self.encode(continuation)
    if not cont:
      raise ValueError(f"continuation {continuation!r} encodes to no tokens.")
    return Request(tuple(self.prefix) + tuple(ctx) + tuple(cont), len(cont))

  def rolling(self, text: str) -> list[Request]:
    return rolling_requests(self.encode(text), self.prefix, self.scorer.max_len,
                            self.rolling_overlap)


def pick_shots(pool: Sequence[dict], k: int, index: int, seed: int, exclude_self: bool,
               group: str | None = None, group_key: str = "subject") -> list[dict]:
  """k examples from pool, drawn with a generator seeded by (seed, index).
  Examples of the same group (e.g. MMLU subject) come first when given."""
  if k <= 0:
    return []
  cand = [j for j in range(len(pool)) if not (exclude_self and j == index)]
  rng = np.random.default_rng([seed, index])
  order = [cand[j] for j in rng.permutation(len(cand))]
  if group is not None:
    order = ([j for j in order if pool[j].get(group_key) == group]
             + [j for j in order if pool[j].get(group_key) != group])
  return [pool[j] for j in order[:k]]


def _ppl(lp: float, n: int) -> float:
  return math.exp(min(-lp / max(n, 1), 700.0))


# -- perplexity -------------------------------------------------------------------------


def eval_perplexity(records, ctx: Context, **_):
  reqs, owner = [], []
  for i, r in enumerate(records):
    rs = ctx.rolling(r["text"])
    reqs += rs
    owner += [i] * len(rs)
  scores = ctx.scorer.score(reqs)
  lp = np.zeros(len(records))
  n = np.zeros(len(records), np.int64)
  for i, s in zip(owner, scores):
    lp[i] += s.logprob
    n[i] += s.n_tokens
  total_lp, total_n = float(lp.sum()), int(n.sum())
  metrics = dict(perplexity=_ppl(total_lp, total_n), nll=-total_lp / max(total_n, 1),
                 tokens=total_n, n=len(records))
  per = [dict(index=i, tokens=int(n[i]), nll=float(-lp[i] / max(n[i], 1)))
         for i in range(len(records))]
  return metrics, per


# -- LAMBADA ----------------------------------------------------------------------------


def split_last_word(text: str) -> tuple[str, str]:
  """'... the old man' -> ('... the old', ' man')."""
  m = re.match(r"^(.*\S)(\s+\S+)$", text.rstrip(), re.S)
  if not m:
    raise ValueError(f"LAMBADA passage {text[:40]!r}... has no last word after a context.")
  return m.group(1), m.group(2)


def eval_lambada(records, ctx: Context, **_):
  pairs = [split_last_word(r["text"]) for r in records]
  scores = ctx.scorer.score([ctx.pair(c, w) for c, w in pairs])
  lp = sum(s.logprob for s in scores)
  n = sum(s.n_tokens for s in scores)
  metrics = dict(perplexity=_ppl(lp, n), acc=float(np.mean([s.greedy for s in scores])),
                 tokens=n, n=len(records))
  per = [dict(index=i, target=w.strip(), correct=s.greedy, logprob=s.logprob)
         for i, ((_, w), s) in enumerate(zip(pairs, scores))]
  return metrics, per


# -- MMLU -------------------------------------------------------------------------------


def mmlu_header(subject: str | None) -> str:
  topic = f" on {subject.replace('_', ' ')}" if subject else ""
  return f"Multiple-choice questions{topic}, each followed by its answer.\n\n"


def mmlu_item(r: dict, with_answer: bool) -> str:
  lines = [r["question"].strip()]
  lines += [f"{LETTERS[j]}. {c.strip()}" for j, c in enumerate(r["choices"])]
  ans = f" {LETTERS[r['answer']]}" if with_answer else ""
  return "\n".join(lines) + "\nAnswer:" + ans


def eval_mmlu(records, ctx: Context, pool, exclude_self, num_fewshot=5, seed=0, **_):
  ppl_reqs, ppl_owner, mc_reqs = [], [], []
  for i, r in enumerate(records):
    shots = pick_shots(pool, num_fewshot, i, seed, exclude_self, r.get("subject"))
    head = mmlu_header(r.get("subject")) + "".join(mmlu_item(s, True) + SHOT_SEP for s in shots)
    rs = ctx.rolling(head + mmlu_item(r, True))  # the thesis' perplexity readout
    ppl_reqs += rs
    ppl_owner += [i] * len(rs)
    prompt = head + mmlu_item(r, False)
    mc_reqs += [ctx.pair(prompt, f" {LETTERS[j]}") for j in range(len(r["choices"]))]
  scores = ctx.scorer.score(ppl_reqs + mc_reqs)
  ppl_scores, mc_scores = scores[:len(ppl_reqs)], scores[len(ppl_reqs):]
  lp = sum(s.logprob for s in ppl_scores)
  n = sum(s.n_tokens for s in ppl_scores)
  per, k = [], 0
  for i, r in enumerate(records):
    ll = [s.logprob for s in mc_scores[k:k + len(r["choices"])]]
    k += len(r["choices"])
    per.append(dict(index=i, pred=int(np.argmax(ll)), answer=r["answer"], logprobs=ll))
  acc = float(np.mean([p["pred"] == p["answer"] for p in per]))
  return dict(perplexity=_ppl(lp, n), acc=acc, tokens=n, n=len(records)), per


# -- multiple choice (ARC, SciQ) ----------------------------------------------------------


def mc_prompt(r: dict) -> str:
  ctx = f"{r['context'].strip()}\n" if r.get("context") else ""
  return f"{ctx}Question: {r['question'].strip()}\nAnswer:"


def choose(logprobs: Sequence[float], lengths: Sequence[int]) -> tuple[int, int]:
  """(argmax of raw log-likelihood, argmax of log-likelihood per character)."""
  ll = np.asarray(logprobs, np.float64)
  return int(np.argmax(ll)), int(np.argmax(ll / np.maximum(np.asarray(lengths), 1)))


def eval_multiple_choice(records, ctx: Context, pool, exclude_self, num_fewshot=0, seed=0, **_):
  reqs, conts = [], []
  for i, r in enumerate(records):
    shots = pick_shots(pool, num_fewshot, i, seed, exclude_self)
    head = "".join(f"{mc_prompt(s)} {s['choices'][s['answer']].strip()}{SHOT_SEP}"
                   for s in shots)
    prompt = head + mc_prompt(r)
    cs = [f" {c.strip()}" for c in r["choices"]]
    reqs += [ctx.pair(prompt, c) for c in cs]
    conts.append(cs)
  scores = ctx.scorer.score(reqs)
  per, k = [], 0
  for i, (r, cs) in enumerate(zip(records, conts)):
    ll = [s.logprob for s in scores[k:k + len(cs)]]
    k += len(cs)
    raw, norm = choose(ll, [len(c) for c in cs])
    per.append(dict(index=i, pred=raw, pred_norm=norm, answer=r["answer"], logprobs=ll))
  return dict(acc=float(np.mean([p["pred"] == p["answer"] for p in per])),
              acc_norm=float(np.mean([p["pred_norm"] == p["answer"] for p in per])),
              n=len(records)), per


# -- Winogrande ---------------------------------------------------------------------------


def winogrande_pairs(r: dict) -> list[tuple[str, str]]:
  """Partial scoring: (sentence up to the blank with option o, the rest) per option."""
  before, after = r["sentence"].split("_", 1)
  return [(before + o.strip(), after) for o in r["options"]]


def eval_winogrande(records, ctx: Context, pool, exclude_self, num_fewshot=0, seed=0, **_):
  reqs = []
  for i, r in enumerate(records):
    shots = pick_shots(pool, num_fewshot, i, seed, exclude_self)
    head = "".join(s["sentence"].replace("_", s["options"][s["answer"]].strip()) + SHOT_SEP
                   for s in shots)
    reqs += [ctx.pair(head + c, rest) for c, rest in winogrande_pairs(r)]
  scores = ctx.scorer.score(reqs)
  per = []
  for i, r in enumerate(records):
    ll = [scores[2 * i].logprob, scores[2 * i + 1].logprob]
    per.append(dict(index=i, pred=int(np.argmax(ll)), answer=r["answer"], logprobs=ll))
  return dict(acc=float(np.mean([p["pred"] == p["answer"] for p in per])), n=len(records)), per


# -- generative QA (TriviaQA, WebQS) --------------------------------------------------------


def qa_prompt(r: dict, with_answer: bool) -> str:
  ans = f" {r['answers'][0].strip()}" if with_answer else ""
  return f"Question: {r['question'].strip()}\nAnswer:{ans}"


def first_line(text: str) -> str:
  return text.split("\n", 1)[0].strip()


def eval_generative_qa(records, ctx: Context, pool, exclude_self, num_fewshot=1, seed=0,
                       max_new_tokens=24, **_):
  if ctx.generate is None:
    raise ValueError("generative_qa needs a generate function (the eval job builds one from "
                     "sbp_jax.generate.sampler).")
  prompts = []
  for i, r in enumerate(records):
    shots = pick_shots(pool, num_fewshot, i, seed, exclude_self)
    prompts.append("".join(qa_prompt(s, True) + SHOT_SEP for s in shots) + qa_prompt(r, False))
  outs = ctx.generate(prompts, int(max_new_tokens))
  per = []
  for i, (r, o) in enumerate(zip(records, outs)):
    pred = first_line(o)
    per.append(dict(index=i, prediction=pred, answers=r["answers"],
                    correct=exact_match(pred, r["answers"])))
  return dict(em=float(np.mean([p["correct"] for p in per])), n=len(records)), per


EVALUATORS = {
    "perplexity": eval_perplexity,
    "lambada": eval_lambada,
    "mmlu": eval_mmlu,
    "multiple_choice": eval_multiple_choice,
    "winogrande": eval_winogrande,
    "generative_qa": eval_generative_qa,
}

DEFAULT_FEWSHOT = {"mmlu": 5, "generative_qa": 1}


def evaluate_records(fmt: str, records: list[dict], ctx: Context, pool: list[dict] | None = None,
                     **options) -> tuple[dict, list[dict]]:
  """Metrics and per-example results of one task. pool: few-shot examples (default:
  the records themselves, each item excluded from its own shots)."""
  if fmt not in EVALUATORS:
    raise ValueError(f"task format {fmt!r} is not known; choose one of {sorted(EVALUATORS)}.")
  if not records:
    raise ValueError(f"a {fmt} task got no records.")
  options.setdefault("num_fewshot", DEFAULT_FEWSHOT.get(fmt, 0))
  exclude_self = pool is None
  return EVALUATORS[fmt](records, ctx, pool=records if pool is None else pool,
                         exclude_self=exclude_self, **options)
