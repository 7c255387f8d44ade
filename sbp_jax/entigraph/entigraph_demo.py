"""Job `entigraph_demo`: the whole EntiGraph loop on a tiny model, end to end on CPU.

  1. base:      pretrain the tiny byte-level model briefly on generic text
  2. entigraph: that model as the generator (local backend) writes the synthetic corpus
  3. cpt:       continue pretraining on it with replay of the generic text
  4. qa:        closed-book QA (sampled 5-shot-style CoT and log-likelihood), before and after

A tiny model cannot follow the extraction prompt, so its JSON mostly fails to
parse; `entigraph.extraction_fallback` decides what happens then (the demo
uses capitalised phrases as entities, marked 'heuristic' in the manifest).
Every step writes under its own subdirectory and is skipped or resumed on a re-run.
"""

from __future__ import annotations

import copy
import os

from sbp_jax import fileio
from sbp_jax.entigraph import cpt, qa
from sbp_jax.entigraph import synth_corpus
from sbp_jax.entigraph.backends import LocalGenerator
from sbp_jax.entigraph.articles import load_documents


def _bytes_data(path: str) -> dict:
  return dict(kind="text_bytes", path=path, text="", eval_fraction=0.0)


def _export_corpus(shards_glob: str, docs, include_raw: bool, path: str) -> int:
  """The synthetic texts (and optionally the source documents) as one text file
  for the byte-level demo model. With the seqio data layer a config points at
  the JSONL shards directly instead (configs/entigraph_cpt.py)."""
  texts = list(cpt._text_records(shards_glob))  # pylint: disable=protected-access
  if include_raw:
    texts += [f"{d.title}\n\n{d.text}" for d in docs]
  fileio.write_text(path, "\n\n".join(texts) + "\n")
  return len(texts)


def _latest(ckpt_dir: str) -> str:
  return ckpt_dir if fileio.glob(os.path.join(ckpt_dir, "*")) else ""


def run(config, workdir: str) -> dict:
  from sbp_jax.generate.generate_job import make_sampler  # pylint: disable=g-import-not-at-top
  from sbp_jax.train.loop import train  # pylint: disable=g-import-not-at-top
  d = config.demo
  results = {}

  # 1. Base model.
  base_ckpt = ""
  if int(d.base_steps) > 0:
    tr = copy.deepcopy(config.train)
    tr.num_steps = int(d.base_steps)
    base_dir = os.path.join(workdir, "base")
    hist = train(cpt.derive(config, job="train", train=tr, data=_bytes_data(d.generic)), base_dir)
    base_ckpt = os.path.join(base_dir, "checkpoints")
    losses = hist["loss"]
    results["base_final_loss"] = losses[max(losses)] if losses else None
    print(f"[base] {d.base_steps} steps on {d.generic}; final loss "
          f"{results['base_final_loss']}", flush=True)

  # 2. EntiGraph synthetic corpus with the base model as generator.
  gen_cfg = cpt.derive(config)
  with gen_cfg.unlocked():
    gen_cfg.generate.checkpoint = base_ckpt
  base_sampler = make_sampler(gen_cfg)
  gen = LocalGenerator(base_sampler, int(config.generator.batch_size), int(config.generator.top_k))
  eg_dir = os.path.join(workdir, "entigraph")
  manifest = synth_corpus.run_pipeline(gen_cfg, eg_dir, generator=gen)
  synth_corpus.print_manifest(manifest)
  results["entigraph"] = manifest

  # 3. CPT with replay.
  docs = load_documents(config.entigraph.documents)
  corpus = os.path.join(workdir, "cpt_corpus.txt")
  n_texts = _export_corpus(manifest["shards"], docs, bool(d.include_raw), corpus)
  tr = copy.deepcopy(config.train)
  tr.lr, tr.end_lr, tr.init_from = float(d.cpt_lr), float(d.cpt_lr) / 10, base_ckpt
  cpt_cfg = cpt.derive(config, job="entigraph_cpt", train=tr,
                    data=dict(kind="replay", rate=float(d.replay_rate), main=_bytes_data(corpus),
                              replay=_bytes_data(d.generic)))
  with cpt_cfg.unlocked():
    cpt_cfg.cpt.epochs = float(d.cpt_epochs)
  cpt_dir = os.path.join(workdir, "cpt")
  print(f"[cpt] corpus: {n_texts} texts ({'synthetic + source documents' if d.include_raw else 'synthetic only'})",
        flush=True)
  hist = cpt.run(cpt_cfg, cpt_dir)
  results["cpt_plan"] = hist["plan"]
  results["cpt_final_loss"] = hist["loss"][max(hist["loss"])] if hist["loss"] else None

  # 4. Closed-book QA before and after.
  results["qa_before"] = qa.evaluate(gen_cfg, os.path.join(workdir, "qa_before"),
                                     sampler=base_sampler)
  after_cfg = cpt.derive(config)
  with after_cfg.unlocked():
    after_cfg.generate.checkpoint = os.path.join(cpt_dir, "checkpoints")
  results["qa_after"] = qa.evaluate(after_cfg, os.path.join(workdir, "qa_after"),
                                    sampler=make_sampler(after_cfg))

  m = manifest
  print("\n=== EntiGraph demo summary ===")
  print(f"source corpus: {len(docs)} documents, {m['raw_tokens']} tokens; synthetic corpus: "
        f"{m['tokens']} tokens {m['tokens_by_kind']}")
  x = m["extraction"]
  print(f"entity JSON parse rate: {x['parse_rate']:.2f} of documents "
        f"({x['reply_parse_rate']:.2f} of {x['calls']} replies); entities from "
        f"{x['entities_source']}; {m['pairs']} pair and {m['triples']} triple texts")
  print(f"CPT: {results['cpt_plan']['num_steps']} steps over {results['cpt_plan']['corpus_tokens']}"
        f" tokens x {results['cpt_plan']['epochs']} epochs, replay {d.replay_rate}; final loss "
        f"{results['cpt_final_loss']}")
  print(qa.format_summary(results["qa_before"], "before CPT: "))
  print(qa.format_summary(results["qa_after"], "after CPT:  "))
  fileio.write_json(os.path.join(workdir, "demo_summary.json"), results, default=str)
  return results
