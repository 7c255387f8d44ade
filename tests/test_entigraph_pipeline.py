"""The EntiGraph / rephrase pipeline with a scripted generator (no model)."""

import collections
import json
import math
import os
import random
import re
import types

import pytest

from configs import entigraph_generate
from sbp_jax.entigraph import prompts, synth_corpus
from sbp_jax.entigraph.articles import Document
from sbp_jax.errors import InputError
from sbp_jax.entigraph.synth_corpus import (balance_leads, entity_pairs, heuristic_entities,
                                            sample_pairs, sample_triples)

DOCS = [
    dict(id="d0", title="The Salt Road", text="Ilse Varn led a caravan from Oskar Bay to Tessel."),
    dict(id="d1", title="Glass Orchard", text="Pim Ardent grew glass apples for the Duke Halloran."),
    dict(id="d2", title="Quiet Engine", text="Noor Baines repaired the engine at Fallow Mill."),
]
ENTS = {"d0": ["Ilse Varn", "caravan", "Oskar Bay", "Tessel", "salt"],
        "d1": ["Pim Ardent", "glass apples", "Duke Halloran", "orchard"],
        "d2": ["Noor Baines", "engine", "Fallow Mill", "repair", "river", "town"]}


class ScriptedGen:
  """Extraction replies: d1 first answers in prose (a parse failure), then
  fenced JSON; d2 never gives JSON. Relation replies name their entities."""

  def __init__(self, fail_after=None):
    self.calls = 0
    self.d1_tried = False
    self.fail_after = fail_after

  def complete(self, prompts, params):
    out = []
    for p in prompts:
      self.calls += 1
      if self.fail_after is not None and self.calls > self.fail_after:
        raise KeyboardInterrupt("simulated interruption")
      doc = next(d for d in DOCS if f"Title: {d['title']}" in p)
      if "Reply with a single JSON object" in p:
        if doc["id"] == "d2":
          out.append("I am not sure what entities are.")
        elif doc["id"] == "d1" and not self.d1_tried:
          self.d1_tried = True
          out.append("Let me think about this article first.")
        else:
          js = json.dumps({"summary": f"About {doc['title']}.", "entities": ENTS[doc["id"]]})
          out.append(f"```json\n{js}\n```\nDone." if doc["id"] == "d1" else js)
      else:
        about = re.search(r'Write a short passage about (.*) in "', p)  # none in a rewrite
        names = re.split(r", | and ", about.group(1)) if about else []
        out.append(f"{doc['title']}: " + " | ".join(names))
    return out

  def chat(self, conversations, params):
    raise AssertionError("the scripted tests use style='completion'")


def _config(tmp_path, **over):
  path = tmp_path / "docs.jsonl"
  path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
  c = entigraph_generate.get_config()
  c.generator.style = "completion"
  c.tokenizer.kind = "bytes"  # token counts = UTF-8 bytes, checked below
  c.entigraph.documents = str(path)
  c.entigraph.num_triples = 3
  c.entigraph.batch_size = 4
  c.entigraph.progress = False
  for k, v in over.items():
    setattr(c.entigraph, k, v)
  return c


def _records(work):
  rows = []
  for f in sorted(os.listdir(os.path.join(work, "shards"))):
    rows += [json.loads(l) for l in open(os.path.join(work, "shards", f))]
  return rows


def test_enumeration_counts():
  ents = [f"e{i}" for i in range(9)]
  pairs = entity_pairs(ents)
  assert len(pairs) == 36 and len(set(pairs)) == 36
  assert all(ents.index(a) < ents.index(b) for a, b in pairs)
  for k in (0, 5, 50, 83, 84, 200, -1):  # sparse, dense, exactly all, more than all, all
    t = sample_triples(ents, k, random.Random(1))
    want = 84 if k < 0 else min(k, math.comb(9, 3))
    assert len(t) == want and len(set(t)) == want
    assert all(len(set(x)) == 3 and list(x) == sorted(x, key=ents.index) for x in t)
  # Seeded: the same seed picks the same triples; another seed others.
  assert sample_triples(ents, 10, random.Random(3)) == sample_triples(ents, 10, random.Random(3))
  assert sample_triples(ents, 10, random.Random(3)) != sample_triples(ents, 10, random.Random(4))
  assert sample_triples(ents[:2], 5, random.Random(0)) == []


def test_sample_pairs_names_every_entity_it_can():
  ents = [f"e{i}" for i in range(9)]
  for k, named in ((2, 4), (4, 8), (5, 9), (6, 9), (20, 9)):
    for seed in range(5):
      p = sample_pairs(ents, k, random.Random(seed))
      assert len(p) == k and len(set(p)) == k
      assert all(ents.index(a) < ents.index(b) for a, b in p)
      # The first min(n, 2k) entities in list order are each in a pair.
      assert set(ents[:named]) <= {e for pair in p for e in pair}
  assert sample_pairs(ents, 3, random.Random(1)) == sample_pairs(ents, 3, random.Random(1))
  assert len({tuple(sample_pairs(ents, 3, random.Random(s))) for s in range(10)}) > 1
  assert sample_pairs(ents[:1], 3, random.Random(0)) == sample_pairs([], 3, random.Random(0)) == []
  rng = random.Random(0)  # all pairs (0, or as many as there are) draw nothing
  assert sample_pairs(ents, 0, rng) == sample_pairs(ents, 36, rng) == entity_pairs(ents)
  assert rng.random() == random.Random(0).random()


def test_tasks_without_the_new_keys_are_every_pair_then_the_same_triples():
  e = entigraph_generate.get_config().entigraph
  e.num_triples = 5
  ents = [f"e{i}" for i in range(7)]
  got = synth_corpus._tasks(None, e, ents, random.Random(3))
  want = ([("pair", p) for p in entity_pairs(ents)]
          + [("triple", t) for t in sample_triples(ents, 5, random.Random(3))])
  assert got == want
  e.relation_prefill_lead = True  # the lead alone reorders nothing
  assert synth_corpus._tasks(None, e, ents, random.Random(3)) == want
  e.balance_leads = True
  assert synth_corpus._tasks(None, e, ents, random.Random(3)) != want


def test_balance_leads_spreads_the_first_entity():
  ents = [f"e{i}" for i in range(8)]
  groups = sample_pairs(ents, 6, random.Random(0)) + sample_triples(ents, 2, random.Random(0))
  out = balance_leads(groups, random.Random(0))
  assert [sorted(g) for g in out] == [sorted(g) for g in groups]  # the same entities
  led = collections.Counter()
  for g in out:  # each lead had led no more groups than the others in its group
    assert all(led[g[0]] <= led[x] for x in g)
    led[g[0]] += 1
  # More different leads than list order gives (there e0 leads every group it is in).
  assert len(led) > len({g[0] for g in groups})


def test_heuristic_entities():
  text = "Mara Quill met the Duke of Ashby. Later Mara Quill rode to Ashby. The end."
  assert heuristic_entities(text, 2) == ["Mara Quill", "Duke of Ashby"]
  # An option line is one entity; a capitalised word that only opens lines or sentences is none.
  doc = "-l, --list\n\nList the files.\n\n--sort\n\nSort them. Use --list with Zeta or -l."
  assert heuristic_entities(doc, 0) == ["-l, --list", "--sort", "Zeta"]


def test_heuristic_entities_of_a_command_line_reference():
  """Options first (text order, -h last, long argument lists by their flag), then
  identifiers by count, then names; placeholders, code and sentence openers give none."""
  doc = "\n\n".join([
      "Command-line options", "New in version 3.9.", "-h, --help", "Show the help.",
      "-c <archive> <source1> ... <sourceN>", "Create an archive from the sources.",
      "--with-openssl=DIR", "Build against the OpenSSL found in DIR. See PYTHONPATH.",
      "-r N, --repeat=N", "Repeat N times; PYTHONPATH and Py_DEBUG apply, see json.dumps().",
      "$ python -m tool --fast Monty Python",
      "Enable Valgrind support when the Valgrind headers exist. Build Python with GCC."])
  assert heuristic_entities(doc, 0) == [
      "-c", "--with-openssl=DIR", "-r N, --repeat=N", "-h, --help",  # options
      "PYTHONPATH", "Py_DEBUG", "json.dumps()", "GCC",                # identifiers
      "Valgrind", "OpenSSL", "Python"]                                # names
  assert heuristic_entities(doc, 2) == ["-c", "--with-openssl=DIR"]
  # Option lines in a row spell one option; a sentence opening with a flag is prose.
  doc = "\n\n".join(["-m <mode>", "--mode <mode>", "Pick the mode.", "-c, --compress",
                      "Compress the files.", "--compress has no effect on copies.",
                      "-l <file>", "--list <file>", "-x"])
  assert heuristic_entities(doc, 0) == ["-m, --mode", "-c, --compress", "-l, --list, -x"]


def test_entity_paragraphs_keep_where_each_entity_is_defined():
  """An option's line and the description after it come first, then one prose mention;
  paragraphs about other options are cut, and text order is kept."""
  doc = "\n\n".join([
      "Intro: run with -c to create.",              # 0 mentions -c in prose
      "-m <mode>", "--mode <mode>", "Pick the mode.",  # 1-3: one option, two lines
      "-c, --create", "Create an archive.",         # 4-5
      "-x", "Extract an archive.",                  # 6-7: another option, cut
      "PYTHONPATH", "Where modules are found.",     # 8-9: a heading and its description
      "Use --create with care; -c is slow."])       # 10: second prose mention of -c
  paras = doc.split("\n\n")
  got = synth_corpus.entity_paragraphs(doc, ["-c, --create", "-m, --mode"]).split("\n\n")
  assert got == [paras[i] for i in (0, 1, 2, 3, 4, 5)]  # -c: its line + first mention
  got = synth_corpus.entity_paragraphs(doc, ["PYTHONPATH", "-x"]).split("\n\n")
  assert got == [paras[i] for i in (6, 7, 8, 9)]
  # A name the text never has leaves the whole document (nothing to cut to).
  assert synth_corpus.entity_paragraphs(doc, ["Zeta"]) == doc
  # One spelling of a flag list finds the option line; the other line comes with it.
  got = synth_corpus.entity_paragraphs(doc, ["--mode"]).split("\n\n")
  assert got == [paras[i] for i in (2, 3)]
  # A description without a full stop still ends the option (the next option is cut).
  terse = "-n N, --number=N\n\nhow many times to run\n\n-r N\n\nhow often to repeat"
  assert synth_corpus.entity_paragraphs(terse, ["-n N, --number=N"]) == (
      "-n N, --number=N\n\nhow many times to run")


def test_relation_context_cuts_the_relation_prompt_to_its_entities(tmp_path):
  text = "\n\n".join(["-c, --create", "Create an archive.", "-l", "List an archive.",
                       "-x", "Extract an archive."])
  seen = {}
  for context in ("document", "entity_paragraphs"):
    c = _config(tmp_path, entity_source="heuristic", max_entities=2, relation_context=context)
    path = tmp_path / "tool.jsonl"
    path.write_text(json.dumps(dict(id="t", title="tool", text=text)) + "\n")
    c.entigraph.documents = str(path)
    seen[context] = []
    gen = types.SimpleNamespace(complete=lambda ps, params, out=seen[context]: (
        out.extend(ps) or ["-c and -l differ." for _ in ps]))
    synth_corpus.run_pipeline(c, str(tmp_path / context), generator=gen)
  assert len(seen["document"]) == len(seen["entity_paragraphs"]) == 1  # the pair -c, -l
  assert "Extract an archive." in seen["document"][0]
  cut = seen["entity_paragraphs"][0]
  assert "Create an archive." in cut and "List an archive." in cut
  assert "Extract an archive." not in cut
  with pytest.raises(InputError, match=r"entigraph.relation_context='doc'; choose one of"):
    synth_corpus.run_pipeline(_config(tmp_path, relation_context="doc"), str(tmp_path / "x"),
                              generator=ScriptedGen())


class ListGen:
  """Every extraction reply is the same entity list."""

  def __init__(self, entities):
    self.entities = entities

  def complete(self, prompts, params):
    return [json.dumps({"summary": "s", "entities": self.entities}) for _ in prompts]


def test_extraction_keeping_under_two_entities_fails_so_the_fallback_applies(tmp_path):
  c = _config(tmp_path, entity_filter=True, extraction_retries=1)
  doc = Document(id="t", title="tool: Options", text=(
      "-f, --force\n\nForce a rebuild of the file list. See also --quiet and Zeta Tools."))
  ext, ents = synth_corpus.extract(ListGen(["file list", "1", "Options"]), "completion", doc,
                                   c.entigraph, 0)
  assert not ext["ok"] and ents == [] and ext["attempts"] == 2
  assert "1 entities left" in ext["failed_replies"][0]["error"]
  ext, ents = synth_corpus.extract(ListGen(["file list", "Zeta Tools"]), "completion", doc,
                                   c.entigraph, 0)
  assert ext["ok"] and ents == ["file list", "Zeta Tools"]


def test_pipeline_outputs_manifest_and_failures(tmp_path):
  c = _config(tmp_path)
  work = str(tmp_path / "run")
  m = synth_corpus.run_pipeline(c, work, generator=ScriptedGen())
  rows = _records(work)
  x = m["extraction"]
  assert (x["parsed"], x["failed"], x["documents"]) == (2, 1, 3)
  assert x["methods"] == {"clean": 1, "fenced": 1}
  # d1 needed 2 calls (prose, then fenced), d2 used all 3 and failed.
  assert x["calls"] == 1 + 2 + 3
  fails = [json.loads(l) for l in open(os.path.join(work, "failures.jsonl"))]
  assert [f["doc_id"] for f in fails] == ["d1", "d2", "d2", "d2"]
  assert all(f["raw"] and f["error"] for f in fails)
  # Pairs: C(5,2)+C(4,2) = 16; triples: 3 per parsed doc; d2 ('record') contributes nothing.
  assert m["pairs"] == 16 and m["triples"] == 6
  kinds = [r["kind"] for r in rows]
  assert kinds.count("pair") == 16 and kinds.count("triple") == 6 and kinds.count("summary") == 2
  assert not any(r["doc_id"] == "d2" for r in rows)
  for r in rows:  # provenance: each relation text is about exactly its entities
    assert r["text"] and r["num_tokens"] == len(r["text"].encode())
    if r["kind"] in ("pair", "triple"):
      assert r["text"].split(": ", 1)[1].split(" | ") == r["entities"]
  assert m["tokens"] == sum(r["num_tokens"] for r in rows)
  assert json.load(open(os.path.join(work, "manifest.json")))["tokens"] == m["tokens"]


def test_fallbacks(tmp_path):
  m = synth_corpus.run_pipeline(_config(tmp_path, extraction_fallback="heuristic"),
                            str(tmp_path / "h"), generator=ScriptedGen())
  rows = [r for r in _records(str(tmp_path / "h")) if r["doc_id"] == "d2"]
  assert m["extraction"]["entities_source"] == {"model": 2, "heuristic": 1}
  assert [(r["kind"], r["entities"]) for r in rows] == [("pair", ["Noor Baines", "Fallow Mill"])]
  m = synth_corpus.run_pipeline(_config(tmp_path, extraction_fallback="raw_doc"),
                            str(tmp_path / "r"), generator=ScriptedGen())
  rows = [r for r in _records(str(tmp_path / "r")) if r["doc_id"] == "d2"]
  assert [r["kind"] for r in rows] == ["raw_doc"] and DOCS[2]["text"] in rows[0]["text"]


def test_heuristic_entity_source_makes_no_extraction_call(tmp_path):
  gen = ScriptedGen()
  prompts_seen = []
  complete = gen.complete
  gen.complete = lambda ps, params: prompts_seen.extend(ps) or complete(ps, params)
  m = synth_corpus.run_pipeline(_config(tmp_path, entity_source="heuristic", max_entities=2),
                                str(tmp_path / "h"), generator=gen)
  assert prompts_seen and not any("Reply with a single JSON object" in p for p in prompts_seen)
  assert m["extraction"]["entities_source"] == {"heuristic": 3}
  rows = _records(str(tmp_path / "h"))
  assert {r["kind"] for r in rows} == {"pair"}  # no summaries: nothing was extracted
  for d in DOCS:
    want = heuristic_entities(d["text"], 2)
    assert [r["entities"] for r in rows if r["doc_id"] == d["id"]] == [want]
  with pytest.raises(InputError, match=r"entigraph.entity_source='llm'; choose one of"):
    synth_corpus.run_pipeline(_config(tmp_path, entity_source="llm"), str(tmp_path / "x"),
                              generator=ScriptedGen())
  assert not (tmp_path / "x").exists()


def test_rerun_with_other_prompt_wording_is_refused_not_reused(tmp_path, monkeypatch):
  c = _config(tmp_path)
  work = str(tmp_path / "run")
  synth_corpus.run_pipeline(c, work, generator=ScriptedGen())
  gen = ScriptedGen()
  synth_corpus.run_pipeline(c, work, generator=gen)  # same wording: nothing is regenerated
  assert gen.calls == 0
  monkeypatch.setattr(prompts, "RELATION_SYSTEM", prompts.RELATION_SYSTEM + " Be brief.")
  with pytest.raises(InputError, match=r"prompts: "):
    synth_corpus.run_pipeline(c, work, generator=ScriptedGen())


def test_the_renamed_prefill_key_is_named_not_ignored(tmp_path):
  c = _config(tmp_path)
  c.entigraph.relation_prefill_heading = True
  with pytest.raises(InputError, match="relation_prefill_heading was renamed.*relation_prefill_lead"):
    synth_corpus.run_pipeline(c, str(tmp_path / "x"), generator=ScriptedGen())
  assert not (tmp_path / "x").exists()


def test_resume_after_interruption_has_no_duplicates_or_gaps(tmp_path):
  c = _config(tmp_path)
  ref = str(tmp_path / "ref")
  synth_corpus.run_pipeline(c, ref, generator=ScriptedGen())
  work = str(tmp_path / "run")
  # Interrupt in the middle of d1's relation calls (d0 takes 1 + 10 + 3 calls).
  with pytest.raises(KeyboardInterrupt):
    synth_corpus.run_pipeline(c, work, generator=ScriptedGen(fail_after=20))
  assert sorted(os.listdir(os.path.join(work, "shards"))) == ["doc-00000.jsonl"]
  assert not any(f.endswith(".tmp") and not f.startswith(".") for f in os.listdir(
      os.path.join(work, "shards")))
  gen = ScriptedGen()
  synth_corpus.run_pipeline(c, work, generator=gen)
  assert gen.calls == 2 + 6 + 3 + 3  # only d1 (2 extraction calls + 9 relations) and d2 redone
  key = lambda r: (r["doc_id"], r["kind"], tuple(r["entities"]), r["text"])
  got, want = sorted(map(key, _records(work))), sorted(map(key, _records(ref)))
  assert got == want and len(set(got)) == len(got)


def test_token_budget_stops_and_rephrase_mode(tmp_path):
  c = _config(tmp_path, mode="rephrase", rephrase_rounds=2, batch_size=2, target_tokens=60)
  work = str(tmp_path / "b")
  m = synth_corpus.run_pipeline(c, work, generator=ScriptedGen())
  rows = _records(work)
  assert m["budget_reached"] and m["tokens"] >= 60
  # The budget is checked between calls: at most one call (2 texts) past it.
  assert m["tokens"] - max(r["num_tokens"] for r in rows) * 2 < 60
  assert {r["kind"] for r in rows} <= {"rephrase_easy", "rephrase_medium", "rephrase_hard"}
  # Same budget again: nothing is generated. A larger one finishes the cut-short document.
  gen = ScriptedGen()
  again = synth_corpus.run_pipeline(c, work, generator=gen)
  assert gen.calls == 0 and again["tokens"] == m["tokens"]
  c.entigraph.target_tokens = 10 ** 6
  gen = ScriptedGen()
  more = synth_corpus.run_pipeline(c, work, generator=gen)
  assert more["documents_done"] == 3 and not more["budget_reached"]
  assert more["records"] == {"rephrase_easy": 6, "rephrase_medium": 6, "rephrase_hard": 6}
  full = synth_corpus.run_pipeline(_config(tmp_path, mode="rephrase", rephrase_rounds=2),
                               str(tmp_path / "full"), generator=ScriptedGen())
  assert full["records"] == {"rephrase_easy": 6, "rephrase_medium": 6, "rephrase_hard": 6}
  assert "extraction" not in full


def test_bad_documents_name_file_and_line(tmp_path):
  c = _config(tmp_path)
  p = tmp_path / "bad.jsonl"
  p.write_text('{"id": "a", "title": "T", "text": "x"}\n{"id": "b", "text": "y"}\n')
  c.entigraph.documents = str(p)
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: needs a non-empty string field 'title'"):
    synth_corpus.run_pipeline(c, str(tmp_path / "x"), generator=ScriptedGen())
