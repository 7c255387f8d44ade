"""Job `entigraph_qa`: closed-book 4-choice QA about the source articles (thesis 2.4.2, A.7.1).

Each question names the article's title and author so that it can be answered
without the text. mode 'sample': a 5-shot chain-of-thought prompt, `k` sampled
replies, keep those whose last line parses strictly as an answer ('Answer: X.'),
pick one of them (qa.pick: 'random' as the thesis, seeded, or 'majority'); a
question with no parseable reply counts as wrong. mode 'loglik': no sampling; the choice whose text has the highest
summed log-probability after the question wins (needs the local model).
"""

from __future__ import annotations

import collections
import logging
import os
import random
import re
from typing import Sequence

import numpy as np

from sbp_jax import fileio, runs
from sbp_jax.fileio import write_jsonl
from sbp_jax.entigraph import prompts
from sbp_jax.entigraph.backends import HTTP_CALL_SETTINGS, GenParams
from sbp_jax.entigraph.articles import Question, load_questions
from sbp_jax.errors import InputError

log = logging.getLogger(__name__)

# The reply's last non-empty line must end in an answer: "Answer: B.", "the answer is (C)",
# or a lone upper-case letter that opens the line or a sentence ("... fits. D."; A.7.1
# checks that a reply ends in "X."; an answer-only prompt's reply is just " B.").
# Lower-case letters never count.
_ANSWER_LINE = re.compile(
    r"(?:^|\b(?:[Aa]nswer|ANSWER)(?:\s+is)?\s*[:：]?\s*|[.!?:]\s+)"
    r"\**\(?([ABCD])\)?\**\.?\**$")
_NEGATED = re.compile(r"\b(?:cannot|can't|can not|unable to|not|no)\s+(?:be\s+)?answer", re.I)


def parse_answer(reply: str) -> str | None:
  """The choice letter of a reply, or None. Strict: only the last non-empty line counts
  (text after a new '## Example' is ignored), and it must end in an upper-case choice
  letter that stands alone or follows 'Answer:' / 'answer is'. So 'I cannot answer a
  question like this.' and 'It is a tool.' are not answers. A last line that is the
  start of '## Example' (a reply cut off by max_new_tokens) is not the last line."""
  lines = reply.split("## Example")[0].strip().splitlines()
  if lines and "## Example".startswith(lines[-1].strip()):  # the next header, cut short
    lines = lines[:-1]
  text = "\n".join(lines).strip()
  if not text:
    return None
  last = text.splitlines()[-1].strip()
  if _NEGATED.search(last):
    return None
  m = _ANSWER_LINE.search(last)
  return m.group(1) if m else None


def question_text(q: Question) -> str:
  return prompts.qa_question(q.title, q.author, q.question, q.year)


PICKS = ("random", "majority")


def pick_answer(valid: Sequence[str], rng: random.Random, how: str = "random") -> str | None:
  """One of the parsed answers: a random one (A.7.1: 'randomly select one valid response',
  explicitly not a vote) or the most frequent (ties broken at random)."""
  if not valid:
    return None
  if how == "random":
    return rng.choice(list(valid))
  if how == "majority":
    counts = collections.Counter(valid)
    top = max(counts.values())
    return rng.choice(sorted(a for a, n in counts.items() if n == top))
  raise InputError(f"qa.pick={how!r}; choose one of {PICKS}.")


def sample_eval(gen, questions: Sequence[Question], k: int, params: GenParams, shots: int,
                seed: int, batch_questions: int = 4, pick: str = "random",
                reasoning: bool = True) -> tuple[list[dict], dict]:
  """Per question: k replies, the parseable ones, and the picked answer (`pick_answer`).
  reasoning: chain-of-thought prompts (the thesis), else answer-only ones (prompts.qa_prompt)."""
  rows = []
  qs = [q for q in questions if q.answer is not None]
  for b in range(0, len(qs), batch_questions):
    chunk = qs[b:b + batch_questions]
    prompt_list = [prompts.qa_prompt(question_text(q), q.choices, shots, reasoning)
                   for q in chunk for _ in range(k)]
    replies = gen.complete(prompt_list, GenParams(
        temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
        stop=("## Example",) + tuple(params.stop), seed=seed * 7919 + b))
    for j, q in enumerate(chunk):
      rep = replies[j * k:(j + 1) * k]
      parsed = [parse_answer(r) for r in rep]
      valid = [p for p in parsed if p is not None]
      chosen = pick_answer(valid, random.Random(f"{seed}:{q.id}"), pick)
      rows.append(dict(id=q.id, doc_id=q.doc_id, question=question_text(q),
                       gold="ABCD"[q.answer], pick=chosen, valid=valid, num_valid=len(valid),
                       correct=chosen == "ABCD"[q.answer], replies=rep))
  return rows, summarize(rows, k, len(questions) - len(qs))


def summarize(rows: list[dict], k: int, skipped: int = 0) -> dict:
  n = len(rows)
  answered = [r for r in rows if r["pick"] is not None]
  return dict(questions=n, skipped_without_answer=skipped,
              accuracy=sum(r["correct"] for r in rows) / max(n, 1),
              parse_rate=sum(r["num_valid"] for r in rows) / max(n * k, 1),
              answered_rate=len(answered) / max(n, 1),
              accuracy_on_answered=sum(r["correct"] for r in answered) / max(len(answered), 1),
              chance=0.25)


# -- log-likelihood scoring ----------------------------------------------------------------


def make_scorer(sampler, batch_size: int = 8):
  """The eval harness' Scorer (sbp_jax.eval.scorer) over a Sampler's model and params."""
  from sbp_jax.eval.scorer import Scorer  # pylint: disable=g-import-not-at-top
  return Scorer(sampler.cfg, sampler.params, sampler.mesh, sampler.rules, batch_size=batch_size,
                min_bucket=sampler.min_bucket)


def score_choices(scorer, tokenizer, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
  """Summed log-probability of each continuation after its prompt."""
  from sbp_jax.eval.scorer import Request  # pylint: disable=g-import-not-at-top
  requests = []
  for p, c in pairs:
    pi, ci = tokenizer.encode(p), tokenizer.encode(c)
    if not pi or not ci:
      raise ValueError(f"empty prompt or continuation in scoring: {p[-40:]!r} / {c!r}")
    requests.append(Request(tuple(pi) + tuple(ci), len(ci)))
  return np.asarray([r.logprob for r in scorer.score(requests)], np.float32)


def loglik_eval(scorer, tokenizer, questions: Sequence[Question], shots: int = 0
                ) -> tuple[list[dict], dict]:
  """The choice with the highest summed log-probability (scorer: sbp_jax.eval.scorer)."""
  qs = [q for q in questions if q.answer is not None]
  pairs = [(prompts.qa_loglik_prompt(question_text(q), shots), " " + c)
           for q in qs for c in q.choices]
  scores = (score_choices(scorer, tokenizer, pairs).reshape(len(qs), 4) if qs
            else np.zeros((0, 4)))
  rows = []
  for q, sc in zip(qs, scores):
    lens = np.array([max(len(c), 1) for c in q.choices], np.float32)
    pick, pick_norm = int(np.argmax(sc)), int(np.argmax(sc / lens))
    rows.append(dict(id=q.id, doc_id=q.doc_id, question=question_text(q), gold="ABCD"[q.answer],
                     pick="ABCD"[pick], pick_norm="ABCD"[pick_norm], scores=sc.tolist(),
                     correct=pick == q.answer, correct_norm=pick_norm == q.answer,
                     num_valid=1))
  s = summarize(rows, 1, len(questions) - len(qs))
  s["accuracy_norm"] = sum(r["correct_norm"] for r in rows) / max(len(rows), 1)
  return rows, s


# -- the job -------------------------------------------------------------------------------


def evaluate(config, workdir: str, generator=None, sampler=None) -> dict:
  """Runs each mode in config.qa.modes; writes qa/<mode>.jsonl and qa/summary.json."""
  from sbp_jax.entigraph.backends import LocalGenerator, make_generator  # pylint: disable=g-import-not-at-top
  qa = config.qa
  questions = load_questions(qa.questions)
  if int(qa.get("max_questions", 0)) > 0:
    questions = questions[:int(qa.max_questions)]
  out_dir = os.path.join(workdir, "qa")
  fileio.makedirs(out_dir)
  summary = {}
  for mode in qa.modes:
    if mode == "sample":
      if generator is None:
        if sampler is not None:
          generator = LocalGenerator(sampler, int(config.generator.get("batch_size", 8)))
        else:
          generator = make_generator(config)
      rows, s = sample_eval(generator, questions, int(qa.k), GenParams(
          temperature=float(qa.temperature), top_p=float(qa.top_p),
          max_tokens=int(qa.max_new_tokens)), int(qa.shots), int(config.seed),
                            int(qa.get("batch_questions", 4)), str(qa.get("pick", "random")),
                            bool(qa.get("reasoning", True)))
    elif mode == "loglik":
      if sampler is None:
        sampler = getattr(generator, "sampler", None)
      if sampler is None:
        from sbp_jax.generate.generate_job import make_sampler  # pylint: disable=g-import-not-at-top
        if config.generator.kind != "local":
          raise ValueError("qa mode 'loglik' scores with the local model; set "
                           "generator.kind='local' or drop 'loglik' from qa.modes.")
        sampler = make_sampler(config)
      rows, s = loglik_eval(make_scorer(sampler, int(qa.get("score_batch", 8))),
                            sampler.tokenizer, questions, int(qa.get("loglik_shots", 0)))
    else:
      raise ValueError(f"qa.modes entry {mode!r}; choose 'sample' or 'loglik'.")
    write_jsonl(os.path.join(out_dir, f"{mode}.jsonl"), rows)
    summary[mode] = s
  fileio.write_json(os.path.join(out_dir, "summary.json"), summary)
  return summary


def format_summary(summary: dict, label: str = "") -> str:
  lines = []
  for mode, s in summary.items():
    extra = (f" parse rate {s['parse_rate']:.2f}, answered {s['answered_rate']:.2f}"
             if mode == "sample" else f" (length-normalised {s['accuracy_norm']:.3f})")
    lines.append(f"{label}QA [{mode}] {s['questions']} questions: accuracy {s['accuracy']:.3f}"
                 f"{extra} (chance 0.25)")
  return "\n".join(lines)


IDENTITY_KEYS = ("qa", "generator", "generate", "tokenizer", "model", "seed")


def run(config, workdir: str) -> dict:
  """The entigraph_qa job. A workdir holding answers made with other settings (questions,
  model, sampling, prompt wording) is refused, naming them. With the same settings it
  evaluates again: a checkpoint retrained to the same step, or another model behind the
  same endpoint, looks the same from here, so earlier answers are never reused."""
  load_questions(config.qa.questions)  # a bad file is named before anything is written
  runs.claim(workdir, "entigraph_qa", config, IDENTITY_KEYS, ("qa",),
             ignore=HTTP_CALL_SETTINGS, extra={"prompts": prompts.fingerprint()})
  s = evaluate(config, workdir)
  print(format_summary(s))
  return s
