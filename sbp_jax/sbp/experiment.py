"""Job `sbp_experiment`: the compute-matched comparison of thesis 3.4.2 in one run.

Three arms see the same number of training tokens (`experiment.token_budget`)
with the same model and schedule:
  baseline  D_pretrain repeated to the budget
  sbp       pair D_pretrain -> synthesizer-tune from the baseline checkpoint ->
            synthesize S_pretrain -> joint training on {D_pretrain repeated,
            S_pretrain once}
  oracle    more unique data under the same budget
and, as the Table B.1 ablation, a synthesizer tuned on random pairs whose
outputs are scored beside the SBP synthesizer's.

Each stage runs in its own sub-directory of the workdir and records its result
in `stage.json` when it finishes; a re-run skips finished stages (training
stages also resume from their checkpoints mid-way). The end result is
`results.json` and `results.txt`: the Table 3.2 layout from the eval harness,
the Table 3.3-style quality report and the Table B.1 similarities.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Callable

import ml_collections
import numpy as np

from sbp_jax.data.jsonl_io import read_jsonl, write_jsonl
from sbp_jax.sbp import joint, quality, synthesize, tuning

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"


# -- stage bookkeeping ---------------------------------------------------------------------

def run_stage(workdir: str, name: str, fn: Callable[[str], dict]) -> dict:
  """fn(stage_dir) -> JSON-able result, run once: a finished stage returns its record."""
  sub = os.path.join(workdir, name)
  path = os.path.join(sub, STAGE_FILE)
  if os.path.exists(path):
    with open(path) as f:
      rec = json.load(f)
    log.info("stage %-18s done earlier (%.0f s); skipping.", name, rec.get("seconds", 0))
    return rec
  os.makedirs(sub, exist_ok=True)
  log.info("stage %-18s starting in %s", name, sub)
  t0 = time.perf_counter()
  rec = dict(fn(sub))
  rec["seconds"] = time.perf_counter() - t0
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:  # every host finished its part before the stage counts as done
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"sbp_stage_{name}")
  if jax.process_index() == 0:
    with open(path + ".tmp", "w") as f:
      json.dump(rec, f, indent=1)
    os.replace(path + ".tmp", path)
  log.info("stage %-18s finished in %.0f s", name, rec["seconds"])
  return rec


def _copy(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(c.to_dict())


def _write_config(sub: str, c: ml_collections.ConfigDict) -> None:
  with open(os.path.join(sub, "config.json"), "w") as f:
    f.write(c.to_json_best_effort(indent=1))


def _tokenizer(config):
  from sbp_jax.generate.tokenizer import make_tokenizer  # pylint: disable=g-import-not-at-top
  return make_tokenizer(config.tokenizer)


# -- stages --------------------------------------------------------------------------------

def prepare_data(config, sub: str) -> dict:
  """D_pretrain (optionally a seeded subset of the real files, as in the demo, where
  the oracle gets the whole corpus) and its unique-token count."""
  e = config.experiment
  docs = synthesize.read_seed_docs(e.real_files)
  oracle_files = e.oracle_files or e.real_files
  real_files = e.real_files
  if e.real_subset_docs:
    if e.real_subset_docs >= len(docs):
      raise ValueError(f"experiment.real_subset_docs={e.real_subset_docs} must be below the "
                       f"{len(docs)} documents of {e.real_files}; the oracle needs more data.")
    rng = np.random.default_rng([config.seed, 0xD0C])
    keep = np.sort(rng.choice(len(docs), int(e.real_subset_docs), replace=False))
    oracle_docs = docs
    docs = [docs[i] for i in keep]
    real_files = os.path.join(sub, "d_pretrain.jsonl")
    write_jsonl(real_files, docs)
  else:
    oracle_docs = None
  rec = dict(real_files=real_files, oracle_files=oracle_files, real_docs=len(docs),
             real_unique_tokens=int(e.real_unique_tokens))
  if not e.real_unique_tokens or oracle_docs is not None:
    tok = _tokenizer(config)
    count = lambda ds: int(sum(len(tok.encode(d["text"])) + 1 for d in ds))  # + EOS
    if not e.real_unique_tokens:
      rec["real_unique_tokens"] = count(docs)
    if oracle_docs is not None:
      rec.update(oracle_docs=len(oracle_docs), oracle_unique_tokens=count(oracle_docs))
  return rec


def train_stage(cfg: ml_collections.ConfigDict, sub: str) -> dict:
  from sbp_jax.train.loop import train  # pylint: disable=g-import-not-at-top
  hist = train(cfg, sub)
  losses = hist["loss"]
  last = max(losses) if losses else None
  return dict(checkpoints=os.path.join(sub, "checkpoints"), num_steps=int(cfg.train.num_steps),
              tokens=int(cfg.train.num_steps) * int(cfg.train.global_batch_size) *
              int(cfg.train.seq_len),
              final_loss=float(losses[last]) if last is not None else None)


def pair_stage(config, real_files, sub: str) -> dict:
  """SBP step 1 (the `pair` job of sbp_jax.sbp.job) on D_pretrain."""
  from sbp_jax.sbp import job as pair_job  # pylint: disable=g-import-not-at-top
  c = _copy(config)
  c.job = "pair"
  c.pair.corpus = real_files
  _write_config(sub, c)
  stats = pair_job.run(c, sub)
  return dict(pairs_files=os.path.join(sub, "pairs", "pairs-*.jsonl"), num_pairs=int(stats["kept"]),
              mean_similarity_kept=stats.get("mean_similarity_kept"),
              mean_similarity_random=stats.get("mean_similarity_random"))


def random_pairs_stage(real_files, num_pairs: int, seed: int, sub: str) -> dict:
  """The B.1 ablation's training data: each d1 with a random other document."""
  docs = synthesize.read_seed_docs(real_files)
  rows, rnd = [], 0
  while len(rows) < num_pairs:
    partner = quality.random_pairs(len(docs), seed + rnd)
    rows += [{"d1": docs[i]["text"], "d2": docs[j]["text"], "d1_id": docs[i]["id"],
              "d2_id": docs[j]["id"]} for i, j in enumerate(partner)]
    rnd += 1
  rng = np.random.default_rng([seed, 0x9A1])
  rows = [rows[i] for i in rng.permutation(len(rows))[:num_pairs]]
  path = os.path.join(sub, "random_pairs.jsonl")
  write_jsonl(path, rows)
  return dict(pairs_files=path, num_pairs=len(rows))


def synthesize_stage(config, checkpoint: str, real_files, target_tokens: int,
                     tokens_per_shard: int, sub: str) -> dict:
  c = _copy(config)
  c.job = "synthesize"
  c.synthesize.checkpoint = checkpoint
  c.synthesize.seed_files = real_files
  c.synthesize.target_tokens = int(target_tokens)
  c.synthesize.tokens_per_shard = int(tokens_per_shard)
  c.synthesize.output_dir = os.path.join(sub, "synthetic")
  c.model.max_seq_len = max(int(c.model.max_seq_len), int(config.synth_tune.seq_len))
  _write_config(sub, c)
  summary = synthesize.run(c, sub)
  return dict(files=os.path.join(sub, "synthetic", "synthetic-*.jsonl"), **{
      k: summary[k] for k in ("shards", "kept", "kept_tokens", "generated", "generated_tokens",
                              "dropped_repetitive", "repetitive_rate")},
              tokens_per_s=summary["this_host"].get("generated_tokens_per_s"))


def eval_stage(config, arms: dict[str, dict], sub: str) -> dict:
  """Every arm on the eval suite (config.eval, the `eval` job of sbp_jax.eval), combined
  into Table 3.2's layout. Without an eval suite, the trainer's held-out perplexity at
  each arm's last step is reported instead."""
  if not config.get("eval") or not config.eval.get("tasks"):
    return heldout_stage(arms)
  from sbp_jax.eval import jobs as eval_jobs  # pylint: disable=g-import-not-at-top
  from sbp_jax.eval import report  # pylint: disable=g-import-not-at-top
  runs = []
  for name, rec in arms.items():
    c = _copy(config)
    c.job = "eval"
    c.eval.checkpoint = rec["checkpoints"]
    done = run_stage(sub, name, lambda s, c=c: dict(results=eval_jobs.run_eval(c, s)))
    runs.append((name, done["results"]))
  t = report.combine(runs, "baseline", "oracle" if "oracle" in arms else "")
  return dict(columns=t["columns"], combined=t, table=report.format_table(t))


def heldout_stage(arms: dict[str, dict]) -> dict:
  """Held-out perplexity of each arm at its last step (the trainer's eval over data.eval)."""
  rows = {}
  for name, rec in arms.items():
    with open(os.path.join(os.path.dirname(rec["checkpoints"]), "history.json")) as f:
      ev = json.load(f)["eval"]
    last = ev[max(ev, key=int)]
    rows[name] = dict(heldout_loss=last["loss"], heldout_perplexity=last["perplexity"])
  return dict(columns=list(rows), arms=rows, table=heldout_table(rows))


def heldout_table(rows: dict[str, dict]) -> str:
  """Table 3.2's layout for the metrics we have: baseline absolute, others as deltas."""
  names = list(rows)
  base = rows[names[0]]
  head = f"{'Benchmark':<28}" + "".join(f"{n:>12}" for n in names)
  line = f"{'Held-out perplexity (lower)':<28}{base['heldout_perplexity']:>12.2f}" + "".join(
      f"{rows[n]['heldout_perplexity'] - base['heldout_perplexity']:>+12.2f}" for n in names[1:])
  out = [head, line]
  if "SBP" in rows and "oracle" in rows:
    gain = base["heldout_perplexity"] - rows["oracle"]["heldout_perplexity"]
    sbp = base["heldout_perplexity"] - rows["SBP"]["heldout_perplexity"]
    share = f"{100 * sbp / gain:.0f}%" if gain > 0 else "n.a. (oracle did not improve)"
    out.append(f"SBP recovers {share} of the oracle's perplexity gain.")
  return "\n".join(out)


def _read_all(files) -> list[dict]:
  import glob  # pylint: disable=g-import-not-at-top
  return [r for p in sorted(glob.glob(files)) for r in read_jsonl(p)]


def quality_stage(config, real_files, sbp_files, random_files, pairs_files, sub: str) -> dict:
  """Table 3.3 columns for SBP outputs, random-pair outputs and real data; Table B.1 means."""
  q = config.quality
  docs = synthesize.read_seed_docs(real_files)
  by_id = {d["id"]: d["text"] for d in docs}
  tok = _tokenizer(config)
  tokenize = lambda t: tok.encode(quality.normalize(t))  # the thesis: normalise, then tokenize
  embed = make_quality_embedder(config)
  rng = np.random.default_rng([config.seed, 0x0A1])

  def sample(rows, k):
    return [rows[i] for i in np.sort(rng.permutation(len(rows))[:k])]

  report, b1 = {}, {}
  for name, files in (("SBP synthetic", sbp_files), ("Random-pair synthetic", random_files)):
    if not files:
      continue
    rows = sample(_read_all(files), int(q.sample_docs))
    report[name] = quality.quality_report(
        [r["text"] for r in rows], [by_id[r["seed_id"]] for r in rows], embed,
        irrelevance_threshold=float(q.irrelevance_threshold), duplicate_n=int(q.duplicate_n),
        tokenize=tokenize, seed=config.seed)
  real = sample(docs, int(q.sample_docs))
  report["Real data (D_pretrain)"] = quality.quality_report(
      [d["text"] for d in real], [], duplicate_n=int(q.duplicate_n), tokenize=tokenize,
      seed=config.seed)
  if pairs_files:
    pairs = sample(_read_all(pairs_files), int(q.sample_docs))
    if pairs:
      b1["paired"] = float(np.mean(quality.pair_similarities(
          [p["d1"] for p in pairs], [p["d2"] for p in pairs], embed)))
  partner = quality.random_pairs(len(docs), config.seed)
  idx = np.sort(rng.permutation(len(docs))[:int(q.sample_docs)])
  b1["random"] = float(np.mean(quality.pair_similarities(
      [docs[i]["text"] for i in idx], [docs[partner[i]]["text"] for i in idx], embed)))
  for name, key in (("SBP synthetic", "generated_sbp"), ("Random-pair synthetic",
                                                          "generated_random")):
    if name in report:
      b1[key] = report[name]["similarity"]
  return dict(quality=report, b1=b1)


def make_quality_embedder(config):
  """The pairing stage's embedder (the thesis scores B.1 with its pairing embedder)."""
  from sbp_jax.sbp.embed import make_embedder  # pylint: disable=g-import-not-at-top
  return make_embedder(config)


def format_b1(b1: dict) -> str:
  cols = [("paired", "Paired docs"), ("random", "Random docs"), ("generated_sbp", "Generated (SBP)"),
          ("generated_random", "Generated (Random)")]
  head = f"{'Statistic':<12}" + "".join(f"{t:>20}" for _, t in cols)
  row = f"{'Mean':<12}" + "".join(f"{b1[k]:>20.3f}" if k in b1 else f"{'n.a.':>20}"
                                  for k, _ in cols)
  return head + "\n" + row


# -- the runner ----------------------------------------------------------------------------

STAGES = ("data", "baseline", "oracle", "pair", "synth_tune", "synthesize", "joint",
          "random_pairs", "synth_tune_random", "synthesize_random", "eval", "quality")


def run(config, workdir: str) -> dict:
  from sbp_jax import runs  # pylint: disable=g-import-not-at-top
  e = config.experiment
  # Every stage depends on the whole config (and its train stages check their own
  # identity too): any change to a finished experiment asks for a new workdir or --overwrite.
  runs.claim(workdir, "sbp_experiment", config, [k for k in config.keys()],
             STAGES + ("results.json", "results.txt"))
  t0 = time.perf_counter()
  tcfg = config.train
  steps = joint.pretraining_steps(int(e.token_budget), int(tcfg.global_batch_size),
                                  int(tcfg.seq_len))
  data = run_stage(workdir, "data", lambda sub: prepare_data(config, sub))
  real_files = data["real_files"]
  real_src = [dict(name="d_pretrain", format="text", files=real_files, weight=1.0)]
  stages = {"data": data}

  stages["baseline"] = run_stage(workdir, "baseline", lambda sub: train_stage(
      joint.text_arm_config(config, real_src, steps), sub))
  base_ckpt = stages["baseline"]["checkpoints"]

  if "oracle" in e.arms:
    oracle_src = [dict(name="oracle", format="text", files=data["oracle_files"], weight=1.0)]
    stages["oracle"] = run_stage(workdir, "oracle", lambda sub: train_stage(
        joint.text_arm_config(config, oracle_src, steps), sub))

  synthetic_tokens = int(e.synthetic_tokens)
  if "sbp" in e.arms:
    stages["pair"] = run_stage(workdir, "pair", lambda sub: pair_stage(config, real_files, sub))
    st = config.synth_tune
    stages["synth_tune"] = run_stage(workdir, "synth_tune", lambda sub: train_stage(
        tuning.synthesizer_tuning_config(
            config, base_ckpt, stages["pair"]["pairs_files"], num_steps=int(st.num_steps),
            lr=float(st.lr), seq_len=int(st.seq_len), global_batch_size=int(st.global_batch_size),
            warmup_frac=float(st.warmup_frac),
            grad_accum_steps=int(st.get("grad_accum_steps", 0))), sub))
    # A little more than the mixture will draw: the synthetic stream must not run dry.
    target = math.ceil(synthetic_tokens * (1.0 + float(e.synthesis_margin)))
    stages["synthesize"] = run_stage(workdir, "synthesize", lambda sub: synthesize_stage(
        config, stages["synth_tune"]["checkpoints"], real_files, target,
        int(config.synthesize.tokens_per_shard), sub))
    from sbp_jax.data.mixture import plan_mixture  # pylint: disable=g-import-not-at-top
    plan = plan_mixture(int(e.token_budget), data["real_unique_tokens"], synthetic_tokens)
    stages["mixture"] = dict(real_rate=plan.real_rate, synthetic_rate=plan.synthetic_rate,
                             real_epochs=plan.real_epochs, synthetic_epochs=plan.synthetic_epochs)
    stages["joint"] = run_stage(workdir, "joint", lambda sub: train_stage(
        joint.text_arm_config(config, joint.joint_sources(
            real_files, stages["synthesize"]["files"], plan), steps), sub))

  random_files = None
  if e.random_pair_ablation:
    n_pairs = int(e.random_pairs) or int(stages.get("pair", {}).get("num_pairs", 0)) or 1000
    stages["random_pairs"] = run_stage(workdir, "random_pairs", lambda sub: random_pairs_stage(
        real_files, n_pairs, int(config.seed), sub))
    st = config.synth_tune
    stages["synth_tune_random"] = run_stage(workdir, "synth_tune_random", lambda sub: train_stage(
        tuning.synthesizer_tuning_config(
            config, base_ckpt, stages["random_pairs"]["pairs_files"], num_steps=int(st.num_steps),
            lr=float(st.lr), seq_len=int(st.seq_len), global_batch_size=int(st.global_batch_size),
            warmup_frac=float(st.warmup_frac),
            grad_accum_steps=int(st.get("grad_accum_steps", 0)), task_name="sbp_random_pairs"), sub))
    n_tok = int(e.ablation_synthetic_tokens)
    stages["synthesize_random"] = run_stage(workdir, "synthesize_random", lambda sub:
                                            synthesize_stage(
        config, stages["synth_tune_random"]["checkpoints"], real_files, n_tok,
        min(n_tok, int(config.synthesize.tokens_per_shard)), sub))
    random_files = stages["synthesize_random"]["files"]

  arms = {"baseline": stages["baseline"]}
  if "joint" in stages:
    arms["SBP"] = stages["joint"]
  if "oracle" in stages:
    arms["oracle"] = stages["oracle"]
  stages["eval"] = run_stage(workdir, "eval", lambda sub: eval_stage(config, arms, sub))
  stages["quality"] = run_stage(workdir, "quality", lambda sub: quality_stage(
      config, real_files, stages.get("synthesize", {}).get("files"), random_files,
      stages.get("pair", {}).get("pairs_files"), sub))

  text = format_results(stages)
  results = dict(stages=stages, wall_seconds=time.perf_counter() - t0)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(workdir, "results.txt"), "w") as f:
    f.write(text + "\n")
  print(text)
  return results


def format_results(stages: dict) -> str:
  out = ["== Compute-matched comparison (Table 3.2 layout; SBP and oracle as deltas to baseline)",
         stages["eval"]["table"]]
  if "mixture" in stages:
    m, d = stages["mixture"], stages["data"]
    out.append(f"D_pretrain: {d['real_docs']} docs, {d['real_unique_tokens']} tokens; joint "
               f"mixture: {100 * m['synthetic_rate']:.1f}% synthetic (seen once), real data "
               f"seen {m['real_epochs']:.2f} times; baseline sees it "
               f"{stages['baseline']['tokens'] / d['real_unique_tokens']:.2f} times.")
  if "synthesize" in stages:
    s = stages["synthesize"]
    out.append(f"Synthesis: {s['kept']} docs / {s['kept_tokens']} tokens kept of {s['generated']} "
               f"generated ({100 * s['repetitive_rate']:.1f}% dropped as repetitive), "
               f"{s['tokens_per_s'] or 0:.0f} generated tokens/s.")
  if "quality" in stages:
    out += ["", "== Synthetic-data quality (Table 3.3 layout, rule-based; lower is better)",
            quality.format_quality_table(stages["quality"]["quality"]),
            "", "== Seed-output embedding similarity (Table B.1)",
            format_b1(stages["quality"]["b1"])]
  out += ["", "Stage wall times: " + ", ".join(
      f"{k} {v['seconds']:.0f}s" for k, v in stages.items() if isinstance(v, dict)
      and "seconds" in v)]
  return "\n".join(out)
