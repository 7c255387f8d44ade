"""Converters from each benchmark's public release files to our JSONL records.

  python -m sbp_jax.eval.convert arc ARC-Easy-Test.jsonl --output=arc_easy.jsonl

  arc         ARC-V1-Feb2018 *.jsonl ({"question": {"stem", "choices": [{"text", "label"}]},
              "answerKey"})                                   -> multiple_choice
  sciq        SciQ {train,valid,test}.json (a list of {"question", "distractor1..3",
              "correct_answer", "support"})                   -> multiple_choice (context = support)
  winogrande  winogrande_1.1 *.jsonl ({"sentence", "option1", "option2", "answer": "1"|"2"})
                                                              -> winogrande
  lambada     lambada_test_plain_text.txt (one passage a line) or a {"text"} JSONL
                                                              -> lambada
  mmlu        data/{dev,val,test}/<subject>_<split>.csv (no header: question, A, B, C, D, letter);
              pass files or directories                       -> mmlu (subject from the file name)
  triviaqa    TriviaQA *.json ({"Data": [{"Question", "Answer": {"Value", "Aliases"}}]})
                                                              -> generative_qa
  webqs       WebQuestions *.json (a list of {"utterance", "targetValue":
              "(list (description X) ...)"})                  -> generative_qa
  text        JSONL / .jsonl.gz / .jsonl.zst with a text field (OpenWebText2's release is
              .jsonl.zst), or .txt files, one document each  -> perplexity

Every output line is checked against its format (sbp_jax/eval/records.py); a
bad input entry raises an error naming the file and line or entry.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from typing import Callable, Iterator

from sbp_jax import fileio
from sbp_jax.fileio import iter_jsonl, open_file, write_jsonl
from sbp_jax.eval.records import RecordError, check_format

Rows = Iterator[dict]


def _bad(path: str, where, msg: str) -> RecordError:
  return RecordError(f"{path}:{where}: {msg}")


def _json_lines(path: str) -> Iterator[tuple[int, dict]]:
  return iter_jsonl(path, error=RecordError)


def _json_file(path: str):
  with open_file(path, text=True) as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise _bad(path, e.lineno, f"not valid JSON ({e.msg}).") from None


# -- per dataset (the record builders are shared with tfds_source.py) ------------------------


def arc_record(question: str, texts: list[str], labels: list[str], key: str, **extra) -> dict:
  # Most keys are letters; some questions number their choices "1".."4".
  if key not in labels:
    raise ValueError(f"answerKey {key!r} is not among the choice labels {labels}")
  return {**extra, "question": question, "choices": list(texts), "answer": labels.index(key)}


def convert_arc(path: str) -> Rows:
  for n, r in _json_lines(path):
    try:
      q = r["question"]
      yield arc_record(q["stem"], [c["text"] for c in q["choices"]],
                       [str(c["label"]) for c in q["choices"]], str(r["answerKey"]),
                       id=r.get("id", ""))
    except (KeyError, TypeError, ValueError) as e:
      raise _bad(path, n, f"not an ARC question ({type(e).__name__}: {e}); expected "
                 "question.stem, question.choices[].text/label and answerKey.") from None


def convert_sciq(path: str) -> Rows:
  data = _json_file(path)
  if not isinstance(data, list):
    raise _bad(path, 1, "SciQ files hold a JSON list of questions.")
  for i, r in enumerate(data):
    try:
      choices = [r["distractor1"], r["distractor2"], r["distractor3"], r["correct_answer"]]
      rec = {"question": r["question"], "choices": choices, "answer": 3}
    except (KeyError, TypeError) as e:
      raise _bad(path, f"entry {i}", f"not a SciQ question (missing {e}); expected question, "
                 "distractor1-3, correct_answer, support.") from None
    if isinstance(r.get("support"), str) and r["support"].strip():
      rec["context"] = r["support"]
    yield rec


def winogrande_record(sentence: str, option1: str, option2: str, answer, **extra) -> dict:
  a = str(answer).strip()
  if a not in ("1", "2"):
    raise ValueError(f"answer {answer!r} is not '1' or '2' (unlabelled test split?)")
  return {**extra, "sentence": sentence, "options": [option1, option2], "answer": int(a) - 1}


def convert_winogrande(path: str) -> Rows:
  for n, r in _json_lines(path):
    try:
      yield winogrande_record(r["sentence"], r["option1"], r["option2"], r.get("answer"),
                              id=r.get("qID", ""))
    except (KeyError, ValueError) as e:
      raise _bad(path, n, f"not a labelled Winogrande item ({e}).") from None


def convert_lambada(path: str) -> Rows:
  if path.endswith((".jsonl", ".jsonl.gz")):
    for n, r in _json_lines(path):
      if not isinstance(r.get("text"), str):
        raise _bad(path, n, "needs a string field 'text'.")
      yield {"text": r["text"]}
    return
  with open_file(path, text=True) as f:
    for line in f:
      if line.strip():
        yield {"text": line.strip()}


_MMLU_SPLIT = re.compile(r"_(dev|val|test|auxiliary_train)$")


def _mmlu_files(path: str) -> list[str]:
  if fileio.isdir(path):
    return fileio.glob(os.path.join(path, "*.csv"))
  return [path]


def convert_mmlu(path: str) -> Rows:
  for file in _mmlu_files(path):
    subject = _MMLU_SPLIT.sub("", os.path.splitext(os.path.basename(file))[0])
    with fileio.open_file(file, text=True, newline="") as f:
      for n, row in enumerate(csv.reader(f), 1):
        if len(row) != 6 or row[5].strip() not in ("A", "B", "C", "D"):
          raise _bad(file, n, "an MMLU row has 6 columns: question, A, B, C, D, answer letter.")
        yield {"question": row[0], "choices": row[1:5], "answer": "ABCD".index(row[5].strip()),
               "subject": subject}


def trivia_record(question: str, value: str, aliases: list[str], **extra) -> dict:
  answers = list(dict.fromkeys(a for a in [value, *aliases] if a and a.strip()))
  return {**extra, "question": question, "answers": answers}


def convert_triviaqa(path: str) -> Rows:
  data = _json_file(path)
  if not isinstance(data, dict) or not isinstance(data.get("Data"), list):
    raise _bad(path, 1, "TriviaQA files hold {\"Data\": [...]} (e.g. unfiltered-web-dev.json).")
  for i, r in enumerate(data["Data"]):
    try:
      yield trivia_record(r["Question"], r["Answer"]["Value"], r["Answer"].get("Aliases", []),
                          id=r.get("QuestionId", ""))
    except (KeyError, TypeError) as e:
      raise _bad(path, f"entry {i}", f"not a TriviaQA question (missing {e}).") from None


_DESCRIPTION = re.compile(r'\(description\s+(?:"((?:[^"\\]|\\.)*)"|([^()"]+?))\)')


def webqs_answers(target: str) -> list[str]:
  """'(list (description "Jazmine Sullivan") (description Canada))' -> the descriptions."""
  out = [(q.replace('\\"', '"') if q else b).strip() for q, b in _DESCRIPTION.findall(target)]
  return [a for a in out if a]


def convert_webqs(path: str) -> Rows:
  data = _json_file(path)
  if not isinstance(data, list):
    raise _bad(path, 1, "WebQuestions files hold a JSON list of questions.")
  for i, r in enumerate(data):
    try:
      answers = webqs_answers(r["targetValue"])
      q = r["utterance"]
    except (KeyError, TypeError) as e:
      raise _bad(path, f"entry {i}", f"not a WebQuestions item (missing {e}).") from None
    if not answers:
      raise _bad(path, f"entry {i}", f"targetValue {r['targetValue']!r} names no answer.")
    yield {"question": q, "answers": answers, "url": r.get("url", "")}


def convert_text(path: str, text_field: str = "text") -> Rows:
  if path.endswith(".txt"):
    with open_file(path, text=True) as f:
      text = f.read()
    if text.strip():
      yield {"text": text}
    return
  for n, r in _json_lines(path):
    if not isinstance(r.get(text_field), str):
      raise _bad(path, n, f"needs a string field {text_field!r} (set --text_field).")
    if r[text_field].strip():
      yield {"text": r[text_field]}


CONVERTERS: dict[str, tuple[str, Callable[..., Rows]]] = {
    "arc": ("multiple_choice", convert_arc),
    "sciq": ("multiple_choice", convert_sciq),
    "winogrande": ("winogrande", convert_winogrande),
    "lambada": ("lambada", convert_lambada),
    "mmlu": ("mmlu", convert_mmlu),
    "triviaqa": ("generative_qa", convert_triviaqa),
    "webqs": ("generative_qa", convert_webqs),
    "text": ("perplexity", convert_text),
}


def convert(dataset: str, inputs: list[str], output: str, **kw) -> int:
  """Writes `output` (JSONL; temp name, then renamed); returns the record count."""
  if dataset not in CONVERTERS:
    raise ValueError(f"dataset {dataset!r} has no converter; choose one of {sorted(CONVERTERS)}.")
  fmt, fn = CONVERTERS[dataset]
  check = check_format(fmt)

  def records():
    for path in inputs:
      if not fileio.exists(path):
        raise FileNotFoundError(f"{path} does not exist.")
      for i, rec in enumerate(fn(path, **kw)):
        err = check(rec)
        if err:
          raise RecordError(f"{path}: converted record {i}: {fmt} record {err}.")
        yield rec

  return write_jsonl(output, records())


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("dataset", choices=sorted(CONVERTERS))
  p.add_argument("inputs", nargs="+", help="release files (or MMLU directories)")
  p.add_argument("--output", required=True, help="JSONL to write")
  p.add_argument("--text_field", default="text", help="for `text`: the JSON field to read")
  a = p.parse_args(argv)
  kw = {"text_field": a.text_field} if a.dataset == "text" else {}
  n = convert(a.dataset, a.inputs, a.output, **kw)
  print(f"wrote {n} {CONVERTERS[a.dataset][0]} records to {a.output}")


if __name__ == "__main__":
  main()
