"""A niche corpus with checked four-choice questions, made by a fixed rule from shipped text.

Source: the command-line option sections of the Python 3.11 manual in
data/demo_corpus/train.jsonl.gz (Debian's python3.11-doc, PSF License; see
data/demo_corpus/README.md and LICENSE). They state obscure specifics (which flag
of `python -m timeit`, of `./configure`, of `compileall` does what) that a small
model cannot answer closed-book.

Rule. In a document, an *option fact* is a short paragraph that is an option line
("-r N, --repeat=N", "--with-pydebug") directly followed by a prose paragraph (its
description). Each fact becomes one question: "which option <description>?", the
right choice the option line's first flag; three distractors are the first flags
of the same document's other facts (`distractors="same_document"`, the default), so
only knowing what each option does answers it. With "other_documents" they are
flags of other documents that this one never names; then knowing which flags a
document has is enough, and every CPT arm learns that (docs/usage.md). Either way
they share the gold flag's shape where they can (see `shape`; failing three of
those, the same number of dashes), drawn with a seeded RNG. Flags everyone knows
(-h, --version, ...) make no questions, and a sentence that opens with a flag is no
option line. `verify` re-checks every question against its document: the gold flag
heads a paragraph that is followed by the quoted description, and a distractor that
is an option of the document is the flag of another fact, described otherwise.
Documents are the sections holding at least `min_facts` facts (ordered by id), so
every document gets several questions.

Outputs (one directory): documents.jsonl {"id", "title", "text", "author"} and
questions.jsonl in articles.py's question layout, plus corpus.json (counts, source).
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Sequence

from sbp_jax import fileio
from sbp_jax.entigraph.articles import Document, load_documents
from sbp_jax.errors import InputError

AUTHOR = "the Python Software Foundation"
SOURCE_LICENSE = ("PSF License Agreement (Python 3.11.2 documentation, Debian python3.11-doc); "
                  "see data/demo_corpus/LICENSE")

# An option line: flags separated by ", " (each optionally with an argument), nothing else.
_FLAG = r"--?[A-Za-z][\w-]*"
_OPTION_LINE = re.compile(rf"^({_FLAG})(?:[ =][^\n,]*)?(?:, {_FLAG}(?:[ =][^\n,]*)?)*$")
_MAX_OPTION_CHARS = 60
_PROSE = re.compile(r"(?<![\w<-])[a-z]+ [a-z]+ [a-z]+\b")
_MIN_DESCRIPTION_CHARS = 16
# Flags whose meaning is common knowledge: a question about them is answerable closed-book.
GENERIC_FLAGS = frozenset({"-h", "--help", "-v", "--verbose", "-V", "--version", "-q", "--quiet"})
_FAMILIES = ("with", "without", "enable", "disable")


@dataclasses.dataclass(frozen=True)
class Fact:
  doc_id: str
  flag: str          # the option line's first flag, e.g. "-r"
  option_line: str   # the whole paragraph, e.g. "-r N, --repeat=N"
  description: str   # the first sentence of the paragraph after it


def paragraphs(text: str) -> list[str]:
  """Blank-line-separated paragraphs, stripped, empty ones dropped."""
  return [p.strip() for p in text.split("\n\n") if p.strip()]


def _first_sentence(p: str) -> str:
  m = re.match(r"(.+?[.!?])(?:\s|$)", p.replace("\n", " "))
  return (m.group(1) if m else p.replace("\n", " ")).strip()


def _is_prose(p: str) -> bool:
  """A sentence that opens with a flag ("--main cannot be specified when ...") is no option
  line: it ends with a full stop, or has three plain words outside <placeholders>."""
  bare = re.sub(r"<[^>]*>|\[[^\]]*\]", "", p)
  return (p.endswith(".") and not p.endswith("...")) or bool(_PROSE.search(bare))


def option_flag(p: str) -> str | None:
  """The first flag of an option line ("-r N, --repeat=N" -> "-r"), else None."""
  if "\n" in p or len(p) > _MAX_OPTION_CHARS or _is_prose(p):
    return None
  m = _OPTION_LINE.match(p)
  return m.group(1) if m else None


def option_arguments(p: str) -> set[str]:
  """The placeholder words of an option line: the word after each flag ("N" of "-r N,
  --repeat=N"), bracketed ones ("<file>", "[no|auto|DIR]"). They name no thing."""
  if option_flag(p) is None:
    return set()
  words = set(re.findall(rf"{_FLAG}[ =][\[<'\"]?([A-Za-z_]\w*)", p))
  words |= set(re.findall(r"<(\w+)>", p))
  for alts in re.findall(r"\[([^\]]*)\]", p):
    words.update(w for w in alts.split("|") if w.strip())
  return words


def option_facts(doc: Document) -> list[Fact]:
  """The document's option facts, in text order (one per first flag)."""
  paras, out, seen = paragraphs(doc.text), [], set()
  for p, nxt in zip(paras, paras[1:]):
    flag = option_flag(p)
    if (flag is None or flag in seen or flag in GENERIC_FLAGS
        or option_flag(nxt) is not None):
      continue
    desc = _first_sentence(nxt)
    if len(desc) < _MIN_DESCRIPTION_CHARS:
      continue
    seen.add(flag)
    out.append(Fact(doc.id, flag, p, desc))
  return out


def doc_options(doc: Document) -> set[str]:
  """Every flag that heads or appears on an option line of the document."""
  flags = set()
  for p in paragraphs(doc.text):
    if option_flag(p) is not None:
      flags.update(re.findall(_FLAG, p))
  return flags


def shape(flag: str) -> tuple[int, str]:
  """Dashes and family ('--with-x' -> (2, 'with')): distractors share the gold flag's shape, so
  the form of a flag (configure's --with-/--enable- vs a tool's -x) gives nothing away."""
  dashes = len(flag) - len(flag.lstrip("-"))
  head = flag.lstrip("-").split("-")[0]
  return dashes, head if dashes == 2 and head in _FAMILIES else ""


def _question_text(desc: str) -> str:
  d = desc.rstrip(".")
  return f"which command-line option is described as follows: \"{d}\"?"


DISTRACTORS = ("same_document", "other_documents")


def make_questions(docs: Sequence[Document], facts: dict[str, list[Fact]], seed: int,
                   distractors: str = "same_document") -> list[dict]:
  """One question per fact. Distractors from the same document are the flags of its other
  facts: only knowing what each option does answers the question. From other documents
  they are flags the document never names, so knowing which flags it has is enough."""
  if distractors not in DISTRACTORS:
    raise InputError(f"niche.distractors={distractors!r}: choose one of {DISTRACTORS}.")
  rng = random.Random(seed)
  by_doc = {d.id: d for d in docs}
  pool = sorted({(f.doc_id, f.flag) for fs in facts.values() for f in fs})
  rows = []
  for d in docs:
    if distractors == "other_documents":
      own = doc_options(d)
      elsewhere = sorted({flag for doc_id, flag in pool if doc_id != d.id and flag not in own})
    for i, f in enumerate(facts[d.id]):
      others = (elsewhere if distractors == "other_documents" else
                [g.flag for g in facts[d.id]
                 if g.flag != f.flag and g.description != f.description])
      # Same shape if there are three, else the same number of dashes, else any flag.
      for same in ([o for o in others if shape(o) == shape(f.flag)],
                   [o for o in others if shape(o)[0] == shape(f.flag)[0]], others):
        if len(same) >= 3:
          break
      if len(same) < 3:
        where = "this document" if distractors == "same_document" else "the other documents"
        raise InputError(f"{d.id}: fewer than 3 option flags in {where} to draw distractors "
                         "from; use documents with more facts (niche.min_facts >= 4).")
      wrong = rng.sample(same, 3)
      choices = wrong + [f.flag]
      rng.shuffle(choices)
      rows.append(dict(id=f"{d.id}/q{i}", doc_id=d.id, title=by_doc[d.id].title, author=AUTHOR,
                       question=_question_text(f.description), choices=choices,
                       answer="ABCD"[choices.index(f.flag)], flag=f.flag,
                       description=f.description))
  return rows


def verify(doc: Document, row: dict) -> None:
  """Raises InputError unless the document answers the question, and only one way."""
  gold = row["choices"]["ABCD".index(row["answer"])]
  paras = paragraphs(doc.text)
  ok = any(option_flag(p) == gold and _first_sentence(n) == row["description"]
           for p, n in zip(paras, paras[1:]))
  if not ok:
    raise InputError(f"question {row['id']}: no option paragraph for {gold!r} followed by "
                     f"{row['description']!r} in document {doc.id!r}; regenerate the corpus.")
  # A distractor may be an option of the document only as the first flag of another fact,
  # described otherwise: never an undescribed option or another spelling of the gold one.
  described = {f.flag: f for f in option_facts(doc)}
  aliases = set(re.findall(_FLAG, described[gold].option_line)) if gold in described else set()
  clash = {c for c in (set(row["choices"]) - {gold}) & doc_options(doc)
           if c not in described or c in aliases or described[c].description == row["description"]
           or gold in re.findall(_FLAG, described[c].option_line)}
  if clash:
    raise InputError(f"question {row['id']}: distractors {sorted(clash)} are options of "
                     f"{doc.id!r} that the description may fit too; regenerate the corpus.")


def build(source, min_facts: int, max_docs: int, seed: int, distractors: str = "same_document"
          ) -> tuple[list[Document], list[dict]]:
  """The documents (sections with >= min_facts option facts, by id) and their questions."""
  if distractors == "same_document" and int(min_facts) < 4:
    raise InputError(f"niche.min_facts={min_facts}: same-document distractors need 4 or more "
                     "facts per document; raise it or set niche.distractors=other_documents.")
  docs = sorted(load_documents(source), key=lambda d: d.id)
  facts = {d.id: option_facts(d) for d in docs}
  chosen = [Document(d.id, d.title, d.text, AUTHOR) for d in docs
            if len(facts[d.id]) >= int(min_facts)]
  if max_docs > 0:
    chosen = chosen[:max_docs]
  if len(chosen) < 2:
    raise InputError(f"{source}: only {len(chosen)} section(s) hold >= {min_facts} command-line "
                     "option facts; distractors need two or more: lower niche.min_facts or use "
                     "the shipped data/demo_corpus/train.jsonl.gz.")
  rows = make_questions(chosen, facts, seed, distractors)
  by_id = {d.id: d for d in chosen}
  for r in rows:
    verify(by_id[r["doc_id"]], r)
  return chosen, rows


def write(config_niche, out_dir: str) -> dict:
  """Builds the corpus into out_dir (documents.jsonl, questions.jsonl, corpus.json)."""
  n = config_niche
  distractors = str(n.get("distractors", "same_document"))
  docs, rows = build(n.source, int(n.min_facts), int(n.get("max_docs", 0)), int(n.seed),
                     distractors)
  fileio.makedirs(out_dir)
  fileio.write_jsonl(f"{out_dir}/documents.jsonl",
                     [dict(id=d.id, title=d.title, text=d.text, author=d.author) for d in docs])
  fileio.write_jsonl(f"{out_dir}/questions.jsonl", rows)
  info = dict(source=str(n.source), license=SOURCE_LICENSE, documents=len(docs),
              questions=len(rows), characters=sum(len(d.text) for d in docs),
              rule=f"command-line option facts; distractors: {distractors}",
              distractors=distractors)
  fileio.write_json(f"{out_dir}/corpus.json", info)
  return info

