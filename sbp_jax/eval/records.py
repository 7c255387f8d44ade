"""Benchmark records: the JSONL fields of each task format, checked line by line.

One JSON object per line (`.jsonl`, `.jsonl.gz`); extra fields are kept and
ignored. `sbp_jax/eval/convert.py` writes these from each dataset's public
release, and `sbp_jax/eval/tfds_source.py` builds them from tensorflow-datasets.

  perplexity       {"text": str}                     held-out documents (OpenWebText2, demo heldout)
  lambada          {"text": str}                     passage; its last word is the target
  mmlu             {"question": str, "choices": [str, ...], "answer": int,
                    "subject": str (optional)}       answer = index into choices
  multiple_choice  {"question": str, "choices": [str, ...], "answer": int,
                    "context": str (optional)}       ARC-Easy/Challenge, SciQ (context = support)
  winogrande       {"sentence": str with one "_", "options": [str, str], "answer": 0 | 1}
  generative_qa    {"question": str, "answers": [str, ...]}   TriviaQA, WebQS (any answer counts)
"""

from __future__ import annotations

from typing import Callable, Sequence

from sbp_jax import fileio
from sbp_jax.fileio import iter_jsonl


class RecordError(ValueError):
  """A malformed record; the message names the file and line."""


def _str(r, k, opt=False):
  v = r.get(k)
  if v is None and opt:
    return None
  if not isinstance(v, str) or not v.strip():
    return f"needs a non-empty string field {k!r}"
  return None


def _str_list(r, k, min_len):
  v = r.get(k)
  if not isinstance(v, list) or len(v) < min_len or not all(isinstance(x, str) and x.strip()
                                                             for x in v):
    return f"needs {k!r}: a list of at least {min_len} non-empty strings"
  return None


def _index(r, k, n):
  v = r.get(k)
  if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n:
    return f"needs {k!r}: an integer index in [0, {n}) into the choices"
  return None


def _check_text(r):
  return _str(r, "text")


def _check_lambada(r):
  err = _str(r, "text")
  if err is None and len(r["text"].split()) < 2:
    err = "field 'text' needs at least two words (a context and the target last word)"
  return err


def _check_choices(r, choices="choices"):
  err = _str(r, "question") or _str_list(r, choices, 2)
  return err or _index(r, "answer", len(r[choices]))


def _check_mmlu(r):
  err = _check_choices(r) or _str(r, "subject", opt=True)
  if err is None and len(r["choices"]) > 26:
    err = "field 'choices' has more than 26 entries (lettered A-Z)"
  return err


def _check_mc(r):
  return _check_choices(r) or _str(r, "context", opt=True)


def _check_winogrande(r):
  err = _str(r, "sentence") or _str_list(r, "options", 2) or _index(r, "answer", 2)
  if err is None and len(r["options"]) != 2:
    err = "field 'options' needs exactly two strings"
  if err is None and r["sentence"].count("_") != 1:
    err = "field 'sentence' needs exactly one '_' marking the blank"
  if err is None and not r["sentence"].split("_", 1)[1].strip():
    err = "field 'sentence' needs text after the '_' (it is what gets scored)"
  return err


def _check_qa(r):
  return _str(r, "question") or _str_list(r, "answers", 1)


CHECKS: dict[str, Callable[[dict], str | None]] = {
    "perplexity": _check_text,
    "lambada": _check_lambada,
    "mmlu": _check_mmlu,
    "multiple_choice": _check_mc,
    "winogrande": _check_winogrande,
    "generative_qa": _check_qa,
}


def check_format(fmt: str) -> Callable[[dict], str | None]:
  if fmt not in CHECKS:
    raise ValueError(f"task format {fmt!r} is not known; choose one of {sorted(CHECKS)}.")
  return CHECKS[fmt]


def expand_files(files: str | Sequence[str], what: str = "files") -> list[str]:
  """A glob, comma-separated globs or a list of them -> sorted existing paths."""
  pats = [p.strip() for p in files.split(",")] if isinstance(files, str) else list(files)
  return fileio.expand([p for p in pats if p], what,
                       "give .jsonl or .jsonl.gz paths (convert public releases with "
                       "sbp_jax/eval/convert.py)")


def read_records(files: str | Sequence[str], fmt: str, limit: int = 0) -> list[dict]:
  """Validated records of format `fmt`; a bad line raises RecordError naming file:line."""
  check = check_format(fmt)
  rows: list[dict] = []
  for path in expand_files(files):
    for n, row in iter_jsonl(path, error=RecordError):
      err = check(row)
      if err:
        raise RecordError(f"{path}:{n}: {fmt} record {err} (see sbp_jax/eval/records.py for "
                          "the fields of each format).")
      rows.append(row)
      if limit and len(rows) >= limit:
        return rows
  return rows


def check_records(rows: Sequence[dict], fmt: str, where: str) -> list[dict]:
  """The same checks for records built in memory (e.g. from TFDS); `where` names the source."""
  check = check_format(fmt)
  for i, r in enumerate(rows):
    err = check(r)
    if err:
      raise RecordError(f"{where}: example {i}: {fmt} record {err}.")
  return list(rows)
