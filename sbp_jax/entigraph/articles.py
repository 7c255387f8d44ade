"""Reading articles and multiple-choice questions from local JSON lines.

Two layouts load directly:
- QuALITY's released files (QuALITY.v1.0.1[.htmlstripped].{train,dev,test}): one
  JSON object per line with article_id, title, author, year, article and
  questions[{question, options[4], gold_label (1-based; absent in the test
  split)}]. The same article appears on several lines (one per question set);
  documents are deduplicated by article_id.
- Our own: documents {"id", "title", "text", "author"?, "year"?} (the project's
  pretraining-text layout), and questions one per line {"doc_id", "title",
  "author", "question", "choices": [4 strings], "answer": "A".."D" or the text of
  one of the choices}.
Bad files stop with an InputError naming the file, line and fix.
"""

from __future__ import annotations

import dataclasses
import os

from sbp_jax import fileio
from sbp_jax.errors import InputError
from sbp_jax.fileio import iter_jsonl


@dataclasses.dataclass(frozen=True)
class Document:
  id: str
  title: str
  text: str
  author: str = ""
  year: str = ""


@dataclasses.dataclass(frozen=True)
class Question:
  id: str
  doc_id: str
  title: str
  author: str
  question: str
  choices: tuple[str, ...]
  answer: int | None  # 0-based index of the right choice; None when unknown
  year: str = ""


def _str(row, key, path, n, required=True) -> str:
  v = row.get(key, "")
  if v is None:
    v = ""
  if not isinstance(v, (str, int)) or (required and v == ""):
    raise InputError(f"{path}:{n}: needs a non-empty string field {key!r}.")
  return str(v)


def load_documents(files) -> list[Document]:
  docs, seen = [], set()
  paths = fileio.expand(files, "entigraph.documents", "check the path (globs are allowed)")
  for path in paths:
    for n, row in iter_jsonl(path):
      if "article" in row:  # QuALITY
        doc = Document(_str(row, "article_id", path, n), _str(row, "title", path, n),
                       _str(row, "article", path, n), _str(row, "author", path, n, False),
                       _str(row, "year", path, n, False))
      else:
        doc = Document(_str(row, "id", path, n), _str(row, "title", path, n),
                       _str(row, "text", path, n), _str(row, "author", path, n, False),
                       _str(row, "year", path, n, False))
      if doc.id not in seen:
        seen.add(doc.id)
        docs.append(doc)
  if not docs:
    raise InputError(f"{', '.join(paths)}: no documents (the file is empty); fill it with JSON "
                     "lines holding 'id', 'title' and 'text' (or QuALITY's 'article'), or point "
                     "entigraph.documents at another file.")
  return docs


def _answer_index(ans, choices: list, path, n) -> int | None:
  """0-based index of the answer, given as a letter A-D or as the text of a choice."""
  if ans is None:
    return None
  if ans in tuple("ABCD"):
    return "ABCD".index(ans)
  if isinstance(ans, str) and ans in choices:
    return choices.index(ans)
  raise InputError(f"{path}:{n}: 'answer'={ans!r} is not among its choices {choices}; give a "
                   "letter A-D or the exact text of the right choice.")


def _quality_questions(row, path, n) -> list[Question]:
  qs = row.get("questions")
  if not isinstance(qs, list):
    raise InputError(f"{path}:{n}: 'questions' must be a list.")
  out = []
  base = dict(doc_id=_str(row, "article_id", path, n), title=_str(row, "title", path, n),
              author=_str(row, "author", path, n, False), year=_str(row, "year", path, n, False))
  for j, q in enumerate(qs):
    opts = q.get("options")
    if not isinstance(opts, list) or len(opts) != 4:
      raise InputError(f"{path}:{n}: questions[{j}].options must list 4 choices.")
    gold = q.get("gold_label")
    if gold is not None and gold not in (1, 2, 3, 4):
      raise InputError(f"{path}:{n}: questions[{j}].gold_label={gold!r}; QuALITY labels are "
                       "1-based (1..4).")
    qid = q.get("question_unique_id") or f"{row.get('set_unique_id', base['doc_id'])}-{j}"
    out.append(Question(id=str(qid), question=_str(q, "question", path, n),
                        choices=tuple(str(o) for o in opts),
                        answer=None if gold is None else int(gold) - 1, **base))
  return out


def load_questions(files) -> list[Question]:
  """Questions from QuALITY lines and/or our own one-question-per-line files.
  Questions without a known answer are kept (answer=None); evaluation skips them."""
  out, seen = [], set()
  paths = fileio.expand(files, "qa.questions", "check the path (globs are allowed)")
  for path in paths:
    for n, row in iter_jsonl(path):
      if "questions" in row:
        qs = _quality_questions(row, path, n)
      elif "question" in row:
        ch = row.get("choices")
        if not isinstance(ch, list) or len(ch) != 4:
          raise InputError(f"{path}:{n}: 'choices' must list 4 strings.")
        ans = _answer_index(row.get("answer"), [str(c) for c in ch], path, n)
        qs = [Question(id=str(row.get("id", f"{os.path.basename(path)}:{n}")),
                       doc_id=_str(row, "doc_id", path, n, False),
                       title=_str(row, "title", path, n), author=_str(row, "author", path, n),
                       question=_str(row, "question", path, n),
                       choices=tuple(str(c) for c in ch),
                       answer=ans,
                       year=_str(row, "year", path, n, False))]
      else:
        raise InputError(f"{path}:{n}: neither a QuALITY line ('questions') nor a question "
                         "line ('question', 'choices', 'answer').")
      for q in qs:
        if q.id not in seen:
          seen.add(q.id)
          out.append(q)
  if not out:
    raise InputError(f"{', '.join(paths)}: no questions (the file is empty); fill it with "
                     "question lines ('question', 'choices', 'answer') or QuALITY lines, or point "
                     "qa.questions at another file.")
  return out
