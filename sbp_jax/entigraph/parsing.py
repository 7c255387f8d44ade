"""Recovering the entity-extraction JSON from what a model actually writes.

Models wrap JSON in code fences, add prose before or after it, stop mid-way
(length limit), or use Python-style quotes. `parse_entities` tries, in order:
the whole text, the inside of a code fence, the first balanced JSON object in
the text, Python literal syntax, and finally a repair of a truncated object
(close the open string, drop the unfinished element, close the brackets).
What worked is reported as `method`; when nothing does, `error` says why and
the caller records the raw text.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\n?(.*?)(?:```|\Z)", re.S)


@dataclasses.dataclass
class ParseResult:
  ok: bool
  summary: str = ""
  entities: list[str] = dataclasses.field(default_factory=list)
  method: str = ""   # clean | fenced | embedded | python_literal | repaired
  error: str = ""


def _first_object(text: str):
  """The first JSON object that decodes starting at some '{' (ignores text after it)."""
  dec = json.JSONDecoder()
  for m in re.finditer(r"\{", text):
    try:
      obj, _ = dec.raw_decode(text, m.start())
      if isinstance(obj, dict):
        return obj
    except json.JSONDecodeError:
      continue
  return None


def _scan(s: str):
  """(stack of open brackets, inside-string?, positions of top-level-safe cut points)."""
  stack, in_str, esc = [], False, False
  cuts = []  # indices just before a ',' at any depth: cutting there drops a partial element
  for i, ch in enumerate(s):
    if in_str:
      if esc:
        esc = False
      elif ch == "\\":
        esc = True
      elif ch == '"':
        in_str = False
      continue
    if ch == '"':
      in_str = True
    elif ch in "{[":
      stack.append(ch)
    elif ch in "}]":
      if stack:
        stack.pop()
    elif ch == ",":
      cuts.append((i, list(stack)))
  return stack, in_str, cuts


def _close(prefix: str, stack) -> str:
  return prefix + "".join("}" if b == "{" else "]" for b in reversed(stack))


def repair_truncated(text: str):
  """Best-effort completion of a JSON object cut off mid-way; None if hopeless."""
  start = text.find("{")
  if start < 0:
    return None
  s = text[start:].rstrip()
  stack, in_str, cuts = _scan(s)
  if not stack and not in_str:
    return None  # balanced yet undecodable: not a truncation
  candidates = []
  # 1. Keep everything: close the string (a cut-off entity name is still a name), then brackets.
  body = s + '"' if in_str else s
  body = re.sub(r"[,:\s]+$", "", body)
  candidates.append(_close(body, _scan(body)[0]))
  # 2. Drop the unfinished element after the last comma, at successively earlier commas.
  for i, st in reversed(cuts[-8:]):
    candidates.append(_close(s[:i], st))
  for c in candidates:
    try:
      obj = json.loads(c)
    except json.JSONDecodeError:
      continue
    if isinstance(obj, dict):
      return obj
  return None


def _validate(obj) -> tuple[str, list[str], str]:
  if not isinstance(obj, dict):
    return "", [], f"expected a JSON object, got {type(obj).__name__}"
  ents = obj.get("entities")
  if ents is None:
    return "", [], "no 'entities' field"
  if not isinstance(ents, list):
    return "", [], f"'entities' is a {type(ents).__name__}, not a list"
  names, seen = [], set()
  for e in ents:
    if isinstance(e, dict):  # {"name": ..., "type": ...} is a common variant
      e = e.get("name") or e.get("entity")
    if not isinstance(e, str):
      continue
    e = " ".join(e.split())
    if e and e.lower() not in seen:
      seen.add(e.lower())
      names.append(e)
  if not names:
    return "", [], "'entities' holds no non-empty strings"
  summary = obj.get("summary", "")
  return (summary if isinstance(summary, str) else ""), names, ""


def parse_entities(text: str) -> ParseResult:
  """Summary and entity list from a model reply (see module docstring)."""
  if not text or not text.strip():
    return ParseResult(False, error="empty reply")
  attempts = []
  stripped = text.strip()
  try:
    attempts.append(("clean", json.loads(stripped)))
  except json.JSONDecodeError:
    pass
  fence = _FENCE.search(text)
  if fence:
    inner = fence.group(1).strip()
    try:
      attempts.append(("fenced", json.loads(inner)))
    except json.JSONDecodeError:
      obj = _first_object(inner)
      if obj is not None:
        attempts.append(("fenced", obj))
  obj = _first_object(text)
  if obj is not None:
    attempts.append(("embedded", obj))
  m = re.search(r"\{.*\}", text, re.S)
  if m:
    try:
      lit = ast.literal_eval(m.group(0))
      attempts.append(("python_literal", lit))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
      pass
  rep = repair_truncated(fence.group(1) if fence else text)
  if rep is not None:
    attempts.append(("repaired", rep))
  errors = []
  for method, o in attempts:
    summary, names, err = _validate(o)
    if not err:
      return ParseResult(True, summary, names, method)
    errors.append(f"{method}: {err}")
  if not attempts:
    return ParseResult(False, error="no JSON object found in the reply")
  return ParseResult(False, error="; ".join(errors))
