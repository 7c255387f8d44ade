"""Keeping the entities that are a document's subjects, dropping what a small model lists instead.

SmolLM2-135M, asked for entities, returns section headings ("Command-Line
Interface"), the title, version strings ("3.11", "New in version 3.5"), whole
sentences and names that are not in the text. `filter_entities` drops, in this
order, with the reason kept for the manifest:
  - empty or over `max_words` words / 80 characters (a sentence, not a name);
  - version strings and dates, then anything else without a letter ("1", "(2)");
  - the title, a part of it, or a heading of the text (a short paragraph without
    final punctuation that is not an option line or code), or a generic heading word;
  - an option's placeholder argument ("DIR" of "--with-openssl=DIR"): it names no thing;
  - names that do not occur in the text (case-insensitive, quotes ignored);
  - repeats (case-insensitive, except flags: -b and -B are two options).
"""

from __future__ import annotations

import collections
import re
from typing import Iterable

from sbp_jax.entigraph.niche_corpus import option_arguments

_VERSION = re.compile(r"^(?:(?:python|version|v|new in version|changed in version|deprecated "
                      r"since version)\s*)?\d+(?:\.\d+)+[a-z0-9]*$|^\d{4}(?:-\d\d){0,2}$", re.I)
_GENERIC = frozenset(s.lower() for s in (
    "introduction", "overview", "summary", "example", "examples", "usage", "note", "notes",
    "see also", "options", "command line", "command-line", "command line interface",
    "command-line interface", "command line options", "command-line options", "command line use",
    "command-line use", "command line usage", "command-line usage", "article", "text",
    "documentation", "title", "author", "entities", "summary of the article"))
_STRIP = "\"'`“”‘’*_ .,:;()[]"
# Stripped around a name; brackets only when unbalanced ("parse()" stays, "__main__" too).
_QUOTES = "\"'`“”‘’* .,:;"


def _clean(name: str) -> str:
  name = " ".join(str(name).split()).strip(_QUOTES)
  for o, c in ("()", "[]"):
    if name.endswith(c) and name.count(c) > name.count(o):
      name = name[:-1]
    if name.startswith(o) and name.count(o) > name.count(c):
      name = name[1:]
  return name


def _norm(s: str) -> str:
  return " ".join(s.strip(_STRIP).lower().split())


def headings(title: str, text: str) -> set[str]:
  """The title, its ': ' and ' — ' parts, and heading-like paragraphs of the text."""
  out = {_norm(title)}
  for part in re.split(r":\s+|\s+[—–-]\s+", title):
    out.add(_norm(part))
  for p in text.split("\n\n"):
    p = p.strip()
    if (p and "\n" not in p and len(p.split()) <= 8 and p[-1] not in ".!?:;,)"
        and not p.startswith(("-", "$", ">>>", "python ")) and p[0].isalpha()):
      out.add(_norm(p))
  out.discard("")
  return out


def filter_entities(entities: Iterable[str], title: str, text: str, max_words: int = 6
                    ) -> tuple[list[str], dict[str, int]]:
  """(kept entities in order, {reason: count} of the dropped ones)."""
  heads, body = headings(title, text), _norm(text)
  args = {_norm(a) for p in text.split("\n\n") for a in option_arguments(p.strip())}
  kept, seen, dropped = [], set(), collections.Counter()
  for e in entities:
    name = _clean(e)
    n = _norm(name)
    if not n or len(n.split()) > max_words or len(n) > 80:
      dropped["length"] += 1
    elif _VERSION.match(n):
      dropped["version"] += 1
    elif not any(ch.isalpha() for ch in n):
      dropped["no_letter"] += 1
    elif n in heads or n in _GENERIC:
      dropped["heading"] += 1
    elif n in args:
      dropped["placeholder"] += 1
    elif not all(p in body for p in (n.split(", ") if n.startswith("-") else [n])):  # -l, --list
      dropped["not_in_text"] += 1
    elif (name if name.startswith("-") else n) in seen:  # flags are case-sensitive: -b, -B
      dropped["repeat"] += 1
    else:
      seen.add(name if name.startswith("-") else n)
      kept.append(name)
  return kept, dict(dropped)
