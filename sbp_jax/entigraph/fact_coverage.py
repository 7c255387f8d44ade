"""Which option facts of the niche corpus a training corpus states: a diagnostic for the
CPT study, which shows why an arm does or does not learn what the questions ask.

A corpus *states* a fact (niche_corpus.Fact) when one of its texts about the fact's
document names the fact's flag, and that sentence with the next one holds at least half
of the content words of the flag's description. The statement is *reversed* when those
words come before the flag in its sentence ("to repeat the timer, use -r"). The niche
questions ask in that direction (description -> flag), while the source documents, and
most texts a small writer leads with the entity, state option -> description.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from sbp_jax.entigraph import niche_corpus
from sbp_jax.entigraph.articles import Document, Question

_WORD = re.compile(r"[a-z][a-z0-9_]+")
_STOP = frozenset(
    "the and for with are this that its into from when which not use used uses using option "
    "options default set sets can".split())
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def content_words(text: str) -> set[str]:
  return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOP}


def statement(fact: niche_corpus.Fact, text: str) -> str | None:
  """'reversed', 'forward' or None: how (and whether) `text` states the fact."""
  need = content_words(fact.description)
  enough = max(1, len(need) / 2)
  flag = re.compile(rf"(?<![\w-]){re.escape(fact.flag)}(?![\w-])")
  sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
  found = None
  for i, s in enumerate(sentences):
    m = flag.search(s)
    if m is None:
      continue
    if len(need & content_words(s[:m.start()])) >= enough:
      return "reversed"
    window = s + " " + (sentences[i + 1] if i + 1 < len(sentences) else "")
    if len(need & content_words(window)) >= enough:
      found = "forward"
  return found


def coverage(docs: Sequence[Document], questions: Sequence[Question],
             records: Iterable[dict]) -> dict:
  """{'stated': [question ids], 'reversed': [question ids]} for a corpus of records
  ({'doc_id', 'text'}). Questions whose gold choice is no option fact of their document
  (other question sets) are left out of both."""
  facts = {(f.doc_id, f.flag): f for d in docs for f in niche_corpus.option_facts(d)}
  texts: dict[str, list[str]] = {}
  for r in records:
    texts.setdefault(r["doc_id"], []).append(r["text"])
  stated, rev = [], []
  for q in questions:
    f = q.answer is not None and facts.get((q.doc_id, q.choices[q.answer]))
    if not f:
      continue
    how = {statement(f, t) for t in texts.get(q.doc_id, [])}
    if how & {"forward", "reversed"}:
      stated.append(q.id)
    if "reversed" in how:
      rev.append(q.id)
  return dict(stated=stated, reversed=rev)


def split_accuracy(rows_by_arm: dict[str, list[dict]], ids: set[str]) -> dict:
  """{'stated' | 'not_stated': {'n', 'accuracy': {arm: ..}}}: each arm's accuracy on the
  questions in `ids` and on the rest (rows: {'id', 'correct'}, the same questions per arm)."""
  out = {}
  for part, inside in (("stated", True), ("not_stated", False)):
    sel = {arm: [r["correct"] for r in rows if (r["id"] in ids) == inside]
           for arm, rows in rows_by_arm.items()}
    out[part] = dict(n=len(next(iter(sel.values()), [])),
                     accuracy={arm: sum(c) / len(c) if c else None for arm, c in sel.items()})
  return out
