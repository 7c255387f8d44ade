"""Recovering entity JSON from messy model replies."""

import pytest

from sbp_jax.entigraph.parsing import parse_entities, repair_truncated

GOOD = '{"summary": "A heist at a lighthouse.", "entities": ["Mara Quill", "the lighthouse", "brass key"]}'
ENTS = ["Mara Quill", "the lighthouse", "brass key"]

# (reply, expected method, expected entities, expected summary)
RECOVERED = [
    (GOOD, "clean", ENTS, "A heist at a lighthouse."),
    ("```json\n" + GOOD + "\n```", "fenced", ENTS, "A heist at a lighthouse."),
    ("Sure! Here it is:\n```\n" + GOOD + "\n```\nLet me know if you need more.", "fenced", ENTS,
     "A heist at a lighthouse."),
    ("Here is the analysis: " + GOOD + " I hope this helps {really}.", "embedded", ENTS,
     "A heist at a lighthouse."),
    ("{'summary': 'x', 'entities': ['Mara Quill', 'brass key']}", "python_literal",
     ["Mara Quill", "brass key"], "x"),
    # Truncated inside the third entity's string: the partial name is kept.
    ('{"summary": "A heist.", "entities": ["Mara Quill", "the lighthouse", "brass k', "repaired",
     ["Mara Quill", "the lighthouse", "brass k"], "A heist."),
    # Truncated after a comma.
    ('```json\n{"summary": "A heist.", "entities": ["Mara Quill", "the lighthouse",', "repaired",
     ["Mara Quill", "the lighthouse"], "A heist."),
    # Truncated inside an object element: its complete name still counts.
    ('{"summary": "s", "entities": ["A", {"name": "B", "type": "pla', "repaired", ["A", "B"], "s"),
    # Object elements and duplicates (case-insensitive) and blank names.
    ('{"summary": "s", "entities": [{"name": "Ada"}, "ada", " ", "Bo  Lin"]}', "clean",
     ["Ada", "Bo Lin"], "s"),
    # Summary missing: entities alone are enough.
    ('{"entities": ["A", "B"]}', "clean", ["A", "B"], ""),
]


@pytest.mark.parametrize("reply,method,ents,summary", RECOVERED)
def test_recovers(reply, method, ents, summary):
  r = parse_entities(reply)
  assert r.ok, r.error
  assert r.method == method
  assert r.entities == ents
  assert r.summary == summary


FAILURES = [
    ("", "empty reply"),
    ("I could not find any entities in this article.", "no JSON object"),
    ('{"summary": "only a summary"}', "no 'entities' field"),
    ('{"summary": "s", "entities": "Ada, Bo"}', "not a list"),
    ('{"summary": "s", "entities": [1, 2, null]}', "no non-empty strings"),
    ('{"summary": "s", "entit', "no 'entities' field"),
]


@pytest.mark.parametrize("reply,why", FAILURES)
def test_failures_say_why(reply, why):
  r = parse_entities(reply)
  assert not r.ok and r.entities == []
  assert why in r.error


def test_repair_leaves_balanced_garbage_alone():
  assert repair_truncated('{"a": 1,, }') is None
  assert repair_truncated("no braces") is None
  assert repair_truncated('{"a": [1, 2') == {"a": [1, 2]}
