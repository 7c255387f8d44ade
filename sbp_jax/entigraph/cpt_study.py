"""Job `entigraph_cpt_study`: EntiGraph CPT on an imported chat model, against its baselines.

Stages, each under its own WORKDIR subdirectory and skipped or resumed on a re-run:
  niche/      the niche corpus and its checked questions (niche_corpus.py)
  replay/     generic text for replay: source sections from pages the niche corpus
              does not use (so no arm sees the niche documents through replay)
  entigraph/  EntiGraph generation with the model's chat template (synth_corpus.py)
  rephrase/   the Rephrase baseline: easy / medium / hard rewrites (same job, mode rephrase)
  corpora/    one training file per arm; scaling subsamples are random (seeded) subsets
              of the EntiGraph texts, never a file-order prefix
  cpt/<arm>/  CPT from the imported checkpoint with replay (cpt.py, train loop)
  qa/<arm>.json  closed-book QA with the thesis protocol (qa.sample_eval)
Arms (thesis 2.4.1, A.2): base (no CPT); raw_cpt (the documents, `arms.raw_epochs`
passes); rephrase_cpt and entigraph_cpt (`arms.synthetic_epochs` passes; the
thesis compares EntiGraph and Rephrase at equal synthetic token counts, so with
`arms.match_rephrase` the Rephrase arm trains on as many tokens as the EntiGraph
arm: its passes are scaled by the token ratio); entigraph_<f> for each scaling
fraction f < 1. WORKDIR/qa_report.json holds the question count, the four arms'
accuracy with 95% Wilson intervals, the scaling points [[tokens, accuracy], ...]
(0 tokens = the base model) and the mixture-of-exponential fit; WORKDIR/scaling.png
plots them. With `qa.loglik`, every arm is also scored by choice log-likelihood
(qa.loglik_eval, 0 shots): the report's `loglik` section holds the same accuracy,
interval, scaling and fit. A small model that cannot yet answer with a letter (SmolLM2-135M
is at chance even with the article in its prompt) still shows there what CPT taught it.
When the questions are niche option facts, the report's `facts_stated` says how many of them
each CPT corpus states (and how many description-first, the direction the questions ask),
and every arm's log-likelihood accuracy on the facts the EntiGraph texts state and on the
rest (fact_coverage.py).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random

from sbp_jax import fileio, runs
from sbp_jax.entigraph import (cpt, fact_coverage, niche_corpus, prompts, qa, scaling_fit,
                               synth_corpus)
from sbp_jax.entigraph.articles import load_documents, load_questions
from sbp_jax.entigraph.backends import GenParams, LocalGenerator
from sbp_jax.errors import InputError

ARMS = ("base", "raw_cpt", "rephrase_cpt", "entigraph_cpt")
IDENTITY_KEYS = ("niche", "replay_text", "entigraph", "arms", "train", "qa", "model", "tokenizer",
                 "import_gguf", "generator", "generate", "seed")
OUTPUTS = ("niche", "replay", "entigraph", "rephrase", "corpora", "cpt", "qa", "qa_report.json",
           "scaling.png")


# -- pure pieces ---------------------------------------------------------------------------


def subsample(records: list[dict], fraction: float, seed: int) -> list[dict]:
  """A uniformly random subset (without replacement) holding about `fraction` of the tokens:
  records in a seeded random order, taken until their tokens reach the share."""
  if not 0 < fraction <= 1:
    raise InputError(f"arms.scaling_fractions holds {fraction}; each must lie in (0, 1].")
  order = list(records)
  random.Random(seed).shuffle(order)
  goal = fraction * sum(r["num_tokens"] for r in records)
  out, used = [], 0
  for r in order:
    if used >= goal:
      break
    out.append(r)
    used += r["num_tokens"]
  return out


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
  """The 95% Wilson score interval of a binomial proportion."""
  if n == 0:
    return 0.0, 1.0
  p = correct / n
  mid = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return max(0.0, mid - half), min(1.0, mid + half)


def arm_plan(eg_tokens: int, rp_tokens: int, raw_tokens: int, a) -> dict[str, dict]:
  """{arm: {'corpus', 'epochs'}} for the CPT arms (see the module docstring)."""
  syn = float(a.synthetic_epochs)
  rp_epochs = syn * eg_tokens / max(rp_tokens, 1) if a.match_rephrase else syn
  plan = {"raw_cpt": dict(corpus="raw", epochs=float(a.raw_epochs)),
          "rephrase_cpt": dict(corpus="rephrase", epochs=rp_epochs),
          "entigraph_cpt": dict(corpus="entigraph", epochs=syn)}
  for f in a.scaling_fractions:
    if float(f) < 1:
      plan[f"entigraph_{float(f):g}"] = dict(corpus=f"entigraph_{float(f):g}", epochs=syn)
  return plan


# -- stages --------------------------------------------------------------------------------


def _records(shard_glob: str) -> list[dict]:
  return [r for p in sorted(fileio.glob(shard_glob)) for r in fileio.read_jsonl(p)]


def write_replay(config, docs, path: str) -> int:
  """Generic replay text: up to replay_text.max_docs sections (seeded order) of pages
  that hold none of the niche documents."""
  if fileio.exists(path):
    return sum(1 for _ in fileio.read_jsonl(path))
  r = config.replay_text
  pages = {d.id.split("#")[0] for d in docs}
  pool = [d for d in load_documents(r.source) if d.id.split("#")[0] not in pages]
  random.Random(int(config.seed)).shuffle(pool)
  rows = [dict(text=f"{d.title}\n\n{d.text}") for d in pool[:int(r.max_docs)]]
  fileio.write_jsonl(path, rows)
  return len(rows)


def _text_data(files: str, name: str) -> dict:
  # No vocab: the job's tokenizer (the import's) is filled in by the data layer.
  return dict(kind="seqio", pack=True, train=[dict(name=name, format="text", files=files,
                                                   weight=1.0)], eval=[])


def train_arm(config, corpus: str, epochs: float, replay: str, out_dir: str) -> dict:
  tr = copy.deepcopy(config.train)
  tr.init_from = os.path.join(config.import_gguf.workdir, "checkpoints")
  from sbp_jax.generate.generate_job import model_config  # pylint: disable=g-import-not-at-top
  model = dataclasses.asdict(model_config(config))  # the import's fields, the config's dtype
  c = cpt.derive(config, job="entigraph_cpt", train=tr, model=model,
              data=dict(kind="replay", rate=float(config.arms.replay_rate),
                        main=_text_data(corpus, "cpt_main"),
                        replay=_text_data(replay, "cpt_replay")))
  with c.unlocked():
    c.cpt = dict(epochs=float(epochs), corpus_tokens=0)
  hist = cpt.run(c, out_dir)
  losses = hist.get("loss", {})
  return dict(plan=hist["plan"], final_loss=losses[max(losses)] if losses else None,
              done=int(hist["state"].step) >= int(hist["plan"]["num_steps"]))


def qa_arm(config, checkpoint: str, questions, path: str) -> dict:
  from sbp_jax.generate.generate_job import make_sampler  # pylint: disable=g-import-not-at-top
  if fileio.exists(path):
    return fileio.read_json(path)
  q = config.qa
  sampler = make_sampler(config, checkpoint=checkpoint)
  # One sampler call per batch of questions, so their shared examples are prefilled once.
  gen = LocalGenerator(sampler, int(q.k) * int(q.batch_questions))
  rows, s = qa.sample_eval(gen, questions, int(q.k), GenParams(
      temperature=float(q.temperature), top_p=float(q.top_p), max_tokens=int(q.max_new_tokens)),
      int(q.shots), int(config.seed), int(q.batch_questions), str(q.pick), bool(q.reasoning))
  correct = sum(r["correct"] for r in rows)
  s["correct"] = correct
  s["interval95"] = wilson(correct, len(rows))
  if q.get("loglik", False):
    lrows, ls = qa.loglik_eval(qa.make_scorer(sampler, int(q.get("score_batch", 16))),
                               sampler.tokenizer, questions, 0)
    hits = sum(r["correct"] for r in lrows)
    s["loglik"] = dict(accuracy=ls["accuracy"], accuracy_norm=ls["accuracy_norm"],
                       interval95=wilson(hits, len(lrows)))
    fileio.write_jsonl(path.replace(".json", "_loglik.jsonl"), lrows)
  fileio.write_jsonl(path.replace(".json", ".jsonl"), rows)
  fileio.write_json(path, s)
  return s


def report(summaries: dict, points: list, n: int, workdir: str,
           coverage: dict | None = None) -> dict:
  """points: the sweep as (tokens, arm), 0 tokens being the base model; coverage: the
  facts each arm's corpus states (see facts_stated), when the questions are option facts."""
  scaling = [(t, summaries[arm]["accuracy"]) for t, arm in points]
  f = scaling_fit.fit([t for t, _ in scaling], [a for _, a in scaling])
  out = dict(questions=n, accuracy={a: summaries[a]["accuracy"] for a in ARMS},
             interval95={a: summaries[a]["interval95"] for a in ARMS},
             parse_rate={a: summaries[a]["parse_rate"] for a in summaries},
             scaling=[[int(t), float(a)] for t, a in scaling], fit=f)
  if all("loglik" in s for s in summaries.values()):
    ll = [(t, summaries[arm]["loglik"]["accuracy"]) for t, arm in points]
    out["loglik"] = dict(
        accuracy={a: s["loglik"]["accuracy"] for a, s in summaries.items()},
        interval95={a: s["loglik"]["interval95"] for a, s in summaries.items()},
        scaling=[[int(t), float(a)] for t, a in ll],
        fit=scaling_fit.fit([t for t, _ in ll], [a for _, a in ll]))
  if coverage:
    out["facts_stated"] = coverage
  fileio.write_json(os.path.join(workdir, "qa_report.json"), out)
  baselines = ("base", "raw_cpt", "rephrase_cpt")
  ll = out.get("loglik")
  scaling_fit.plot(scaling, f, os.path.join(workdir, "scaling.png"),
                   {a: out["accuracy"][a] for a in baselines},
                   loglik=ll and (ll["scaling"], ll["fit"],
                                  {a: ll["accuracy"][a] for a in baselines}))
  return out


def facts_stated(docs, questions, recs: dict, qa_dir: str) -> dict | None:
  """How many question facts each CPT corpus states, and how many of them description-first
  (fact_coverage.py); with log-likelihood rows, every arm's accuracy on the facts the
  EntiGraph texts state and on the rest. None when no question is an option fact."""
  cov = {m: fact_coverage.coverage(docs, questions, recs[m]) for m in ("raw", "entigraph",
                                                                     "rephrase")}
  if not cov["raw"]["stated"] and not cov["entigraph"]["stated"]:
    return None
  out = dict(stated={f"{m}_cpt": len(c["stated"]) for m, c in cov.items()},
             reversed={f"{m}_cpt": len(c["reversed"]) for m, c in cov.items()})
  rows = {arm: os.path.join(qa_dir, f"{arm}_loglik.jsonl") for arm in ARMS}
  if all(fileio.exists(p) for p in rows.values()):
    out["loglik_by_entigraph_stated"] = fact_coverage.split_accuracy(
        {arm: list(fileio.read_jsonl(p)) for arm, p in rows.items()},
        set(cov["entigraph"]["stated"]))
  return out


def check(config) -> None:
  a = config.arms
  if not 0 <= float(a.replay_rate) < 1:
    raise InputError(f"arms.replay_rate={a.replay_rate}; it must lie in [0, 1).")
  if not list(a.scaling_fractions) or len({float(f) for f in a.scaling_fractions} | {1.0}) < 3:
    raise InputError(f"arms.scaling_fractions={tuple(a.scaling_fractions)}: the sweep needs at "
                     "least 3 EntiGraph token counts; give two or more fractions below 1 "
                     "(the full corpus is always one point).")
  if config.qa.pick not in qa.PICKS:
    raise InputError(f"qa.pick={config.qa.pick!r}; choose one of {qa.PICKS}.")


def run(config, workdir: str) -> dict:
  from sbp_jax.entigraph.backends import make_generator  # pylint: disable=g-import-not-at-top
  check(config)
  runs.claim(workdir, "entigraph_cpt_study", config, IDENTITY_KEYS, OUTPUTS,
             extra={"prompts": prompts.fingerprint()})
  join = lambda *p: os.path.join(workdir, *p)

  info = (fileio.read_json(join("niche", "corpus.json")) if fileio.exists(join("niche", "corpus.json"))
          else niche_corpus.write(config.niche, join("niche")))
  docs = load_documents(join("niche", "documents.jsonl"))
  questions = load_questions(join("niche", "questions.jsonl"))
  if 0 < int(config.qa.max_questions) < len(questions):  # a seeded subset across documents
    keep = set(random.Random(int(config.seed)).sample(range(len(questions)),
                                                      int(config.qa.max_questions)))
    questions = [q for i, q in enumerate(questions) if i in keep]
  print(f"[niche] {info['documents']} documents, {len(questions)} questions", flush=True)
  replay = join("replay", "replay.jsonl")
  print(f"[replay] {write_replay(config, docs, replay)} generic sections", flush=True)

  gen = None
  for mode in ("entigraph", "rephrase", "raw"):
    e = copy.deepcopy(config.entigraph)
    e.documents, e.mode = join("niche", "documents.jsonl"), mode
    c = cpt.derive(config, job="entigraph", entigraph=e)
    if mode != "raw" and gen is None and not fileio.exists(join(mode, "manifest.json")):
      gen = make_generator(c)
    m = synth_corpus.run_pipeline(c, join(mode), generator=gen)
    synth_corpus.print_manifest(m)

  recs = {m: _records(join(m, "shards", "doc-*.jsonl")) for m in ("entigraph", "rephrase", "raw")}
  tokens = {m: sum(r["num_tokens"] for r in rs) for m, rs in recs.items()}
  if not tokens["entigraph"]:
    raise InputError(f"{join('entigraph')}: EntiGraph wrote no texts (see its failures.jsonl); "
                     "raise entigraph.extraction_retries or the token limits.")
  fileio.makedirs(join("corpora"))
  corpora = {m: join("corpora", f"{m}.jsonl") for m in recs}
  subsets = dict(recs)
  for f in config.arms.scaling_fractions:
    if float(f) < 1:
      subsets[f"entigraph_{float(f):g}"] = subsample(recs["entigraph"], float(f), int(config.seed))
  for name, rs in subsets.items():
    corpora[name] = join("corpora", f"{name}.jsonl")
    tokens[name] = sum(r["num_tokens"] for r in rs)
    if not fileio.exists(corpora[name]):  # rewritten, it would change the CPT runs' inputs
      fileio.write_jsonl(corpora[name], rs)

  summaries = {"base": qa_arm(config, os.path.join(config.import_gguf.workdir, "checkpoints"),
                              questions, join("qa", "base.json"))}
  plan = arm_plan(tokens["entigraph"], tokens["rephrase"], tokens["raw"], config.arms)
  for arm, p in plan.items():
    if fileio.exists(join("qa", f"{arm}.json")):  # trained and evaluated by an earlier run
      summaries[arm] = fileio.read_json(join("qa", f"{arm}.json"))
      continue
    t = train_arm(config, corpora[p["corpus"]], p["epochs"], replay, join("cpt", arm))
    if not t["done"]:  # SIGTERM or train.run_steps: never evaluate a half-trained arm
      print(f"[{arm}] CPT stopped before step {t['plan']['num_steps']}; run the same command "
            "again to resume.", flush=True)
      return dict(stopped=arm)
    print(f"[{arm}] {t['plan']['num_steps']} steps over {tokens[p['corpus']]} tokens x "
          f"{p['epochs']:.2f} epochs; final loss {t['final_loss']}", flush=True)
    summaries[arm] = qa_arm(config, join("cpt", arm, "checkpoints"), questions,
                            join("qa", f"{arm}.json"))
    print(f"[{arm}] accuracy {summaries[arm]['accuracy']:.3f}", flush=True)
  points = [(0, "base")]
  points += sorted((tokens[p["corpus"]], arm) for arm, p in plan.items()
                   if arm.startswith("entigraph_") and arm != "entigraph_cpt")
  points.append((tokens["entigraph"], "entigraph_cpt"))
  out = report(summaries, points, len(questions), workdir,
               facts_stated(docs, questions, recs, join("qa")))
  for arm in ARMS:
    lo, hi = out["interval95"][arm]
    line = f"{arm:>14}: accuracy {out['accuracy'][arm]:.3f} (95% {lo:.3f}-{hi:.3f})"
    if "loglik" in out:
      lo, hi = out["loglik"]["interval95"][arm]
      line += f"; log-likelihood {out['loglik']['accuracy'][arm]:.3f} (95% {lo:.3f}-{hi:.3f})"
    print(line)
  print(f"scaling {out['scaling']}; fit {out['fit']}")
  if "facts_stated" in out:
    print(f"facts stated by each arm's corpus {out['facts_stated']['stated']} (description "
          f"first {out['facts_stated']['reversed']})")
  if "loglik" in out:
    print(f"log-likelihood scaling {out['loglik']['scaling']}; fit {out['loglik']['fit']}")
  return out
