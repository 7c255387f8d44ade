"""Job `entigraph`: a small corpus -> a synthetic pretraining corpus.

mode 'entigraph' (thesis 2.2.2, A.6.1), per document:
  1. one call extracts a summary and an entity list as JSON (retried up to
     `extraction_retries` times; every failed reply is kept in the document's
     meta file and in failures.jsonl);
  2. one call per entity pair (all pairs) and per sampled triple writes how the
     entities relate in the document, with the title and text in the prompt
     (`relation_context="entity_paragraphs"`: only the paragraphs that define and
     mention the entities, see entity_paragraphs).
mode 'rephrase' (A.6.2): `rephrase_rounds` rewrites per style (easy/medium/hard).
mode 'raw': the source documents as training texts (the Raw CPT baseline), no model.

Output (workdir): shards/doc-NNNNN.jsonl, pretraining-text records
{"text", "doc_id", "title", "kind", "entities", "num_tokens"}; meta/doc-NNNNN.json
per document; manifest.json with counts, parse rates and token totals. A shard
is written under a temporary name and renamed once its document is done, so a
re-run skips finished documents. `target_tokens` stops generation once the
corpus holds that many tokens (counted with config.tokenizer, the training
tokenizer).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import os
import random
import re
import zlib

from sbp_jax import fileio, runs
from sbp_jax.errors import InputError
from sbp_jax.fileio import write_jsonl
from sbp_jax.entigraph import niche_corpus, prompts
from sbp_jax.entigraph.backends import HTTP_CALL_SETTINGS, GenParams, generate, make_generator
from sbp_jax.entigraph.entity_filter import filter_entities
from sbp_jax.entigraph.parsing import parse_entities
from sbp_jax.entigraph.articles import Document, load_documents

log = logging.getLogger(__name__)

IDENTITY_KEYS = ("entigraph", "generator", "generate", "tokenizer", "model", "seed")
OUTPUTS = ("shards", "meta", "manifest.json", "failures.jsonl")
# Settings that change how far or how visibly a run goes, not what a document's texts are.
_RESUMABLE = ("entigraph.progress", "entigraph.target_tokens", "entigraph.max_docs",
              *HTTP_CALL_SETTINGS)

MODES = ("entigraph", "rephrase", "raw")
FALLBACKS = ("record", "raw_doc", "heuristic")
ENTITY_SOURCES = ("model", "heuristic")  # heuristic: heuristic_entities, no extraction call


# -- entity subsets ----------------------------------------------------------------------


def entity_pairs(entities) -> list[tuple[str, str]]:
  return list(itertools.combinations(entities, 2))


def sample_pairs(entities, k: int, rng: random.Random) -> list[tuple[str, str]]:
  """At most k pairs (in list order within each) that name as many entities as they can:
  the first min(n, 2k) entities are matched at random, each into one pair, and any pairs
  left are drawn uniformly from the rest. k <= 0, or k >= C(n, 2), gives every pair (the
  thesis's graph) and draws nothing from rng."""
  n = len(entities)
  if k <= 0 or k >= math.comb(n, 2):
    return entity_pairs(entities)
  covered = list(range(min(n, 2 * k)))
  rng.shuffle(covered)
  picks = {tuple(sorted(covered[i:i + 2])) for i in range(0, len(covered) - 1, 2)}
  if len(covered) % 2:  # the odd one out joins a random partner
    last = covered[-1]
    picks.add(tuple(sorted((last, rng.choice([i for i in range(n) if i != last])))))
  rest = sorted(set(itertools.combinations(range(n), 2)) - picks)
  picks |= set(rng.sample(rest, max(0, k - len(picks))))
  return [(entities[a], entities[b]) for a, b in sorted(picks)]


def sample_triples(entities, k: int, rng: random.Random) -> list[tuple[str, ...]]:
  """k distinct triples (in list order within each), uniformly without
  replacement; all C(n, 3) of them when k >= C(n, 3). k < 0 means all."""
  n = len(entities)
  total = math.comb(n, 3)
  if k < 0 or k >= total:
    return list(itertools.combinations(entities, 3))
  if k == 0:
    return []
  if 2 * k > total:  # dense: enumerate and sample
    idx = sorted(rng.sample(range(total), k))
    allt = list(itertools.combinations(range(n), 3))
    picks = [allt[i] for i in idx]
  else:  # sparse: rejection sampling never enumerates C(n, 3)
    seen = set()
    while len(seen) < k:
      seen.add(tuple(sorted(rng.sample(range(n), 3))))
    picks = sorted(seen)
  return [tuple(entities[i] for i in t) for t in picks]


_CAPS = re.compile(r"(?<!-)\b[A-Z][\w'-]*(?: +(?:of|the|de|von|van|and)? *[A-Z][\w'-]*)*")
# Command-line flags ("-a", "--sort-keys"): the subjects of technical text, never capitalised.
_FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
# Technical identifiers: PYTHONPATH / PGO, Py_DEBUG, json.dumps(), parse().
_IDENT = re.compile(r"(?<![\w.-])(?:[A-Z][A-Za-z0-9]*_[A-Za-z0-9_]+|[A-Z][A-Z0-9]{2,}"
                    r"|[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+(?:\(\))?|[A-Za-z_]\w*\(\))(?![\w-])")
# Paragraphs of code or sample output: their names are data, not the document's subjects.
_CODE_START = ("$", ">>>", "{", "[", "python ", "./")
_COMMON = {"The", "A", "An", "In", "On", "It", "He", "She", "They", "We", "I", "His", "Her",
           "Its", "Their", "This", "That", "These", "Those", "When", "Then", "There", "But",
           "And", "Or", "If", "As", "At", "By", "For", "From", "Of", "To", "With", "After",
           "Before", "Each", "Every", "One", "Some", "Most", "Many", "No", "Not", "So", "Yet",
           # imperatives that open a manual's sentences: "Enable Valgrind support"
           "See", "Use", "Set", "Add", "Enable", "Disable", "Define", "Build", "Compile",
           "Create", "Optional", "Show", "Print", "Run", "Display", "Note", "Also", "Only"}
_CONNECTORS = ("of", "the", "de", "von", "van", "and")
_MAX_OPTION_NAME = 20  # longer option lines with arguments ("-c <tarfile> ...") go by their flag


def _opens_sentence(text: str, start: int) -> bool:
  return text[:start].rstrip(" \t")[-1:] in ("", "\n", ".", "!", "?", ":")


def _ranked(counts: collections.Counter, first: dict) -> list[str]:
  return sorted(counts, key=lambda e: (-counts[e], first[e]))


def heuristic_entities(text: str, k: int) -> list[str]:
  """Names found by rule, the fallback when a (weak) generator returns no usable entity
  list (marked entities_source='heuristic'). In this order:
    1. option lines ("-r N, --repeat=N"), one entity per option, in text order: the
       subjects of a command-line reference. Option lines in a row, which share one
       description, are one entity; a long one with arguments goes by its lines' first
       flags ("-m, --mode");
    2. flags mentioned in prose and technical identifiers (PYTHONPATH, Py_DEBUG,
       json.dumps()), most frequent first; an option's placeholder ("DIR") is no name;
    3. capitalised phrases, most frequent first. A phrase that only ever opens a line
       or sentence ("New in version 3.9", "Build Python in ...") is not a name.
  Paragraphs of code or sample output are skipped."""
  paras = niche_corpus.paragraphs(text)
  # Option lines in a row share the prose after them (short and long spellings such as
  # "-m <mode>" then "--mode <mode>", or compileall's -s and -p): one entity.
  groups, prev = [], False
  for p in paras:
    is_option = niche_corpus.option_flag(p) is not None
    if is_option and prev:
      groups[-1].append(p)
    elif is_option:
      groups.append([p])
    prev = is_option
  options, option_flags, args = [], set(), set()
  for g in groups:
    line = ", ".join(g)
    arg_words = set().union(*(niche_corpus.option_arguments(p) for p in g))
    options.append(line if len(line) <= _MAX_OPTION_NAME or not arg_words else ", ".join(
        dict.fromkeys(niche_corpus.option_flag(p) for p in g)))
    option_flags.update(_FLAG.findall(line))
    args |= arg_words
  # Flags everyone knows (-h, --help) say least about this document: last among the options.
  options.sort(key=lambda o: _FLAG.match(o).group(0) in niche_corpus.GENERIC_FLAGS)
  prose = "\n\n".join(p for p in paras if niche_corpus.option_flag(p) is None
                      and not p.startswith(_CODE_START))
  idents, caps = collections.Counter(), collections.Counter()
  first = {}
  for m in itertools.chain(_FLAG.finditer(prose), _IDENT.finditer(prose)):
    name = m.group(0)
    if name not in option_flags and name not in args:
      idents[name] += 1
      first.setdefault(name, m.start())
  openers = []  # phrases that open a line or sentence, where any word is capitalised
  for m in _CAPS.finditer(prose):
    words = m.group(0).strip().split()
    while words and (words[0] in _COMMON or words[0] in _CONNECTORS):
      words = words[1:]
    name = " ".join(words)
    if len(name) < 3 or any(w in idents or w in args for w in words):
      continue
    if _opens_sentence(prose, m.start()) and len(words) == len(m.group(0).split()):
      openers.append((name, m.start()))
    else:
      caps[name] += 1
      first.setdefault(name, m.start())
  for name, pos in openers:
    tail = name.split(" ", 1)[1] if " " in name else ""
    if tail in caps:  # "Build Python": an ordinary word opening the sentence, then a name
      name = tail
    elif not tail and name not in caps:  # a lone word that only ever opens: "Display", "New"
      continue
    caps[name] += 1
    first.setdefault(name, pos)
  ranked = list(dict.fromkeys(options + _ranked(idents, first) + _ranked(caps, first)))
  return ranked[:k] if k > 0 else ranked


# -- one document ------------------------------------------------------------------------


def _doc_seed(seed: int, doc_id: str) -> int:
  return (seed * 1_000_003 + zlib.crc32(doc_id.encode("utf-8"))) % (2 ** 31)


class _Budget:
  """Tokens written so far versus `target` (0 = no limit)."""

  def __init__(self, target: int, used: int):
    self.target, self.used = int(target), int(used)

  def exhausted(self) -> bool:
    return self.target > 0 and self.used >= self.target


def extract(gen, style: str, doc: Document, e, seed: int) -> tuple[dict, list[str]]:
  """Entity extraction with bounded retries. Returns (record, entities)."""
  item = prompts.entity_extraction(doc.title, doc.text, doc.author)
  attempts = []
  for a in range(1 + int(e.extraction_retries)):
    params = GenParams(temperature=float(e.temperature), top_p=float(e.top_p),
                       max_tokens=int(e.extraction_max_tokens), seed=seed + 7 * a)
    # The reply prefix (prefill) is part of the reply the parser sees.
    raw = generate(gen, style, [item], params, str(e.get("extraction_reply_prefix", "")))[0]
    res = parse_entities(raw)
    ents, dropped = res.entities, {}
    if res.ok and e.get("entity_filter", False):
      ents, dropped = filter_entities(res.entities, doc.title, doc.text)
      if len(ents) < 2:  # no pair to write about: a failure, so retries and fallbacks apply
        res = dataclasses.replace(res, ok=False, error=f"{len(ents)} entities left after the "
                                  f"filter (kept {ents}, dropped {dropped})")
    if res.ok:
      ents = ents[:int(e.max_entities)] if int(e.max_entities) > 0 else ents
      return dict(ok=True, method=res.method, attempts=a + 1, summary=res.summary,
                  failed_replies=attempts, extracted=list(res.entities), dropped=dropped), ents
    attempts.append(dict(raw=raw, error=res.error))
  return dict(ok=False, method="", attempts=len(attempts), summary="",
              failed_replies=attempts), []


def balance_leads(groups, rng: random.Random) -> list[tuple[str, ...]]:
  """Each group reordered so that it opens with one of its entities that has opened the
  fewest groups so far (ties drawn from rng), the rest in their order. A reply prefilled
  with its first entity is mostly about that one, so the leads spread over the entities."""
  led, out = collections.Counter(), []
  for g in groups:
    fewest = min(led[x] for x in g)
    first = rng.choice([x for x in g if led[x] == fewest])
    led[first] += 1
    out.append((first,) + tuple(x for x in g if x != first))
  return out


def _tasks(doc: Document, e, entities, rng) -> list[tuple[str, tuple[str, ...]]]:
  if e.mode == "rephrase":
    return [(f"rephrase_{s}", ()) for _ in range(int(e.rephrase_rounds))
            for s in e.rephrase_styles]
  if e.mode == "raw":
    return []
  pairs = sample_pairs(entities, int(e.get("max_pairs", 0)), rng)
  triples = sample_triples(entities, int(e.num_triples), rng)
  kinds = ["pair"] * len(pairs) + ["triple"] * len(triples)
  groups = pairs + triples
  if e.get("balance_leads", False):
    groups = balance_leads(groups, rng)
  return list(zip(kinds, groups))


RELATION_CONTEXTS = ("document", "entity_paragraphs")
_MENTIONS_PER_ENTITY = 2


def _spellings(entity: str) -> list[str]:
  """The names an entity goes by in the text: each flag of a flag list ("-m, --mode" ->
  -m, --mode; "-d destdir" -> -d), else the entity itself."""
  parts = entity.split(", ") if _FLAG.match(entity) else [entity]
  return [p.split()[0] if _FLAG.match(p) else p for p in parts if p.strip()]


def _is_heading(p: str) -> bool:
  """An option line, or a short line that is no sentence ("PYTHONPATH", "json.dumps(obj)")."""
  return niche_corpus.option_flag(p) is not None or (
      "\n" not in p and len(p) <= 80 and not p.rstrip().endswith((".", ":", "!", "?")))


def entity_paragraphs(text: str, entities) -> str:
  """The document cut to what it says about the entities, in text order: for each entity,
  two paragraphs that name it, where it is defined first (its option line or heading, with
  the paragraph after it, which describes it), then its first mentions in prose."""
  paras = niche_corpus.paragraphs(text)
  keep = set()
  for ent in entities:
    names = [re.compile(rf"(?<![\w-]){re.escape(n)}(?![\w-])") for n in _spellings(ent)]
    hits = [i for i, p in enumerate(paras) if any(n.search(p) for n in names)]
    # Where the entity is defined (its option line, a heading) comes before prose mentions.
    hits.sort(key=lambda i: (not _is_heading(paras[i]), i))
    for i in hits[:_MENTIONS_PER_ENTITY]:
      keep.add(i)
      # Its description is the paragraph after it: after the last of several option lines
      # in a row, or after a heading. (Descriptions without a full stop look like headings,
      # so only option lines chain.)
      j = i
      while j + 1 < len(paras) and niche_corpus.option_flag(paras[j]) is not None:
        j += 1
        keep.add(j)
      if j == i and i + 1 < len(paras) and _is_heading(paras[i]):
        keep.add(i + 1)
  return "\n\n".join(paras[i] for i in sorted(keep)) or text


def _prompt(doc: Document, kind: str, ents, context: str = "document") -> tuple[str, str]:
  if kind.startswith("rephrase_"):
    return prompts.rephrase(kind[len("rephrase_"):], doc.title, doc.text, doc.author)
  text = entity_paragraphs(doc.text, ents) if context == "entity_paragraphs" else doc.text
  return prompts.relation(doc.title, text, ents, doc.author)


def process_document(doc: Document, gen, style: str, e, tok, seed: int, budget: _Budget):
  """Returns (records, meta) for one document; stops early when the budget runs out."""
  dseed = _doc_seed(seed, doc.id)
  rng = random.Random(dseed)
  meta = dict(doc_id=doc.id, title=doc.title, mode=e.mode, complete=True,
              raw_tokens=len(tok.encode(doc.text)))
  records = []

  def emit(text, kind, ents):
    n = len(tok.encode(text))
    records.append(dict(text=text, doc_id=doc.id, title=doc.title, kind=kind,
                        entities=list(ents), num_tokens=n))
    budget.used += n

  entities = []
  if e.mode == "entigraph":
    from_model = e.get("entity_source", "model") == "model"
    ext, entities = (extract(gen, style, doc, e, dseed) if from_model else
                     (dict(ok=False, method="skipped", attempts=0, summary="",
                           failed_replies=[]), []))
    meta["extraction"] = ext
    meta["entities_source"] = "model" if ext["ok"] else "none"
    if ext["ok"] and e.include_summary and ext["summary"].strip():
      emit(f"{doc.title}\n\n{ext['summary'].strip()}", "summary", entities)
    if not ext["ok"]:
      fallback = e.extraction_fallback if from_model else "heuristic"
      if fallback == "raw_doc":
        emit(f"{doc.title}\n\n{doc.text}", "raw_doc", ())
      elif fallback == "heuristic":
        k = int(e.max_entities)
        entities = heuristic_entities(doc.text, 0)
        if e.get("entity_filter", False):  # the same filter as the model's lists
          entities, meta["heuristic_dropped"] = filter_entities(entities, doc.title, doc.text)
        entities = entities[:k] if k > 0 else entities
        meta["entities_source"] = "heuristic"
  elif e.mode == "raw":  # the source documents themselves, for the Raw CPT baseline
    emit(f"{doc.title}\n\n{doc.text}", "raw_doc", ())
  meta["entities"] = entities
  tasks = _tasks(doc, e, entities, rng)
  meta["num_pairs"] = sum(k == "pair" for k, _ in tasks)
  meta["num_triples"] = sum(k == "triple" for k, _ in tasks)
  params = GenParams(temperature=float(e.temperature), top_p=float(e.top_p),
                     max_tokens=int(e.relation_max_tokens))
  bs = int(e.batch_size)
  context = str(e.get("relation_context", "document"))
  for b in range(0, len(tasks), bs):
    if budget.exhausted():
      meta["complete"] = False
      break
    chunk = tasks[b:b + bs]
    leads = [prompts.relation_lead(doc.title, ents)
             if e.get("relation_prefill_lead", False) and k in ("pair", "triple") else ""
             for k, ents in chunk]
    texts = generate(gen, style, [_prompt(doc, k, ents, context) for k, ents in chunk],
                     dataclasses.replace(params, seed=dseed + 1000 + b), leads)
    for (kind, ents), text, lead in zip(chunk, texts, leads):
      if text[len(lead):].strip():  # a prefilled lead alone is no text
        emit(text.strip(), kind, ents)
      else:
        meta.setdefault("empty_replies", 0)
        meta["empty_replies"] += 1
  meta["records"] = dict(collections.Counter(r["kind"] for r in records))
  meta["tokens"] = sum(r["num_tokens"] for r in records)
  by_kind = collections.Counter()
  for r in records:
    by_kind[r["kind"]] += r["num_tokens"]
  meta["tokens_by_kind"] = dict(by_kind)
  return records, meta


# -- the job -----------------------------------------------------------------------------


def _read_meta(path: str):
  return fileio.read_json(path) if fileio.exists(path) else None


def summarize(metas: list[dict], e, target_tokens: int) -> dict:
  kinds, tokens = collections.Counter(), collections.Counter()
  for m in metas:
    kinds.update(m["records"])
  ext = [m["extraction"] for m in metas if "extraction" in m]
  ok = [x for x in ext if x["ok"]]
  total = sum(m["tokens"] for m in metas)
  out = dict(mode=e.mode, documents_done=sum(m["complete"] for m in metas),
             documents_started=len(metas), records=dict(kinds), tokens=total,
             raw_tokens=sum(m["raw_tokens"] for m in metas), target_tokens=target_tokens,
             budget_reached=bool(target_tokens and total >= target_tokens))
  if e.mode == "entigraph":
    calls = sum(x["attempts"] for x in ext)
    out["extraction"] = dict(
        documents=len(ext), parsed=len(ok), failed=len(ext) - len(ok),
        parse_rate=len(ok) / max(len(ext), 1),
        reply_parse_rate=len(ok) / max(calls, 1), calls=calls,
        methods=dict(collections.Counter(x["method"] for x in ok)),
        entities_source=dict(collections.Counter(m.get("entities_source") for m in metas)))
    out["pairs"] = sum(m["num_pairs"] for m in metas)
    out["triples"] = sum(m["num_triples"] for m in metas)
    out["mean_entities"] = sum(len(m["entities"]) for m in metas) / max(len(metas), 1)
    dropped = collections.Counter()
    for x in ok:
      dropped.update(x.get("dropped", {}))
    out["extraction"]["filter_dropped"] = dict(dropped)
  for m in metas:
    for kind, n in m.get("tokens_by_kind", {}).items():
      tokens[kind] += n
  out["tokens_by_kind"] = dict(tokens)
  return out


def claim(config, workdir: str) -> None:
  """The job's run identity (sbp_jax.runs): a re-run with other settings names them."""
  keys = [k for k in runs.config_fields(config, IDENTITY_KEYS)
          if not any(k == r or k.startswith(r + ".") for r in _RESUMABLE)]
  runs.claim(workdir, "entigraph", config, keys, OUTPUTS,
             extra={"prompts": prompts.fingerprint()})


def check(e) -> None:
  """The entigraph section's choices, each named with its options, before anything runs."""
  for key, value, options in (("mode", e.mode, MODES), ("extraction_fallback",
                              e.extraction_fallback, FALLBACKS),
                              ("entity_source", e.get("entity_source", "model"), ENTITY_SOURCES),
                              ("relation_context", e.get("relation_context", "document"),
                               RELATION_CONTEXTS)):
    if value not in options:
      raise InputError(f"entigraph.{key}={value!r}; choose one of {options}.")
  if "relation_prefill_heading" in e:  # renamed: the old key would be ignored silently
    raise InputError("entigraph.relation_prefill_heading was renamed: set "
                     "entigraph.relation_prefill_lead (the reply starts 'In \"<title>\", "
                     "<entity 1>').")


def run_pipeline(config, workdir: str, generator=None) -> dict:
  """Generates (or finishes) the synthetic corpus; returns the manifest."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate.text_codec import make_tokenizer  # pylint: disable=g-import-not-at-top
  e = config.entigraph
  check(e)
  docs = load_documents(e.documents)
  if int(e.get("max_docs", 0)) > 0:
    docs = docs[:int(e.max_docs)]
  tok = make_tokenizer(config.tokenizer)
  claim(config, workdir)
  shard_dir, meta_dir = os.path.join(workdir, "shards"), os.path.join(workdir, "meta")
  fileio.makedirs(shard_dir)
  fileio.makedirs(meta_dir)
  name = lambda i: f"doc-{i:05d}"
  metas = {i: _read_meta(os.path.join(meta_dir, name(i) + ".json")) for i in range(len(docs))}
  done = {i for i, m in metas.items()
          if m is not None and m["complete"] and m["doc_id"] == docs[i].id
          and fileio.exists(os.path.join(shard_dir, name(i) + ".jsonl"))}
  for i, m in metas.items():
    if m is not None and m["doc_id"] != docs[i].id:
      raise ValueError(f"{meta_dir}/{name(i)}.json belongs to document {m['doc_id']!r}, but "
                       f"document {i} of {e.documents} is {docs[i].id!r}; the document list "
                       "changed. Use a fresh workdir.")
  target = int(e.get("target_tokens", 0))
  # Documents cut short by the budget count too: a re-run with the same budget
  # stops at once; a larger budget redoes them (their old tokens are released).
  budget = _Budget(target, sum(m["tokens"] for m in metas.values() if m is not None))
  gen, style = generator, config.generator.style
  bar = tqdm(total=len(docs), initial=len(done), desc=f"{e.mode} docs", unit="doc",
             disable=not e.get("progress", True))
  for i, doc in enumerate(docs):
    if i in done:
      continue
    if budget.exhausted():
      log.info("Token budget %d reached (%d); stopping.", target, budget.used)
      break
    if metas[i] is not None:
      budget.used -= metas[i]["tokens"]
    if gen is None and e.mode != "raw":
      gen = make_generator(config)
    records, meta = process_document(doc, gen, style, e, tok, int(config.seed), budget)
    # meta first: a shard without its meta is never taken as finished.
    fileio.write_json(os.path.join(meta_dir, name(i) + ".json"), meta)
    write_jsonl(os.path.join(shard_dir, name(i) + ".jsonl"), records)
    metas[i] = meta
    bar.update(1)
    bar.set_postfix(tokens=budget.used)
  bar.close()
  started = [metas[i] for i in range(len(docs)) if metas[i] is not None]
  manifest = summarize(started, e, target)
  manifest["documents"] = len(docs)
  manifest["shards"] = os.path.join(shard_dir, "doc-*.jsonl")
  failures = [dict(doc_id=m["doc_id"], **f) for m in started
              for f in m.get("extraction", {}).get("failed_replies", [])]
  write_jsonl(os.path.join(workdir, "failures.jsonl"), failures)
  fileio.write_json(os.path.join(workdir, "manifest.json"), manifest)
  return manifest


def print_manifest(m: dict) -> None:
  print(f"[{m['mode']}] documents {m['documents_done']}/{m['documents']}  records "
        f"{sum(m['records'].values())} {m['records']}")
  print(f"  tokens: synthetic {m['tokens']}  source {m['raw_tokens']}  by kind "
        f"{m['tokens_by_kind']}" + (f"  (budget {m['target_tokens']}"
                                    f"{', reached' if m['budget_reached'] else ''})"
                                    if m['target_tokens'] else ""))
  if "extraction" in m:
    x = m["extraction"]
    print(f"  entity JSON: parsed {x['parsed']}/{x['documents']} documents "
          f"(parse rate {x['parse_rate']:.2f}; per reply {x['reply_parse_rate']:.2f} over "
          f"{x['calls']} calls) methods {x['methods']} entities from {x['entities_source']}")
    print(f"  relations: {m['pairs']} pairs, {m['triples']} triples, mean entities "
          f"{m['mean_entities']:.1f}")


def run(config, workdir: str) -> dict:
  m = run_pipeline(config, workdir)
  print_manifest(m)
  return m
