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

import logging
import math
import os
import time
from typing import Callable

import ml_collections
import numpy as np

from sbp_jax import fileio
from sbp_jax.errors import InputError
from sbp_jax.fileio import read_jsonl, write_jsonl
from sbp_jax.sbp import joint, quality, seed_gate, synthesize
from sbp_jax.sbp import effect_report
from sbp_jax.sbp import synth_tune as tuning

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
REPORT_FILE = "report.json"
PLOT_FILE = "heldout_perplexity.png"


# -- stage bookkeeping ---------------------------------------------------------------------

def run_stage(workdir: str, name: str, fn: Callable[[str], dict]) -> dict:
  """fn(stage_dir) -> JSON-able result, run once: a finished stage returns its record."""
  sub = os.path.join(workdir, name)
  path = os.path.join(sub, STAGE_FILE)
  if fileio.exists(path):
    rec = fileio.read_json(path)
    log.info("stage %-18s done earlier (%.0f s); skipping.", name, rec.get("seconds", 0))
    return rec
  fileio.makedirs(sub)
  log.info("stage %-18s starting in %s", name, sub)
  t0 = time.perf_counter()
  from sbp_jax import runs  # pylint: disable=g-import-not-at-top
  with runs.stage_of("sbp_experiment"):  # the experiment's claim covers its stages' outputs
    rec = dict(fn(sub))
  rec["seconds"] = time.perf_counter() - t0
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:  # every host finished its part before the stage counts as done
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(f"sbp_stage_{name}")
  if jax.process_index() == 0:
    fileio.write_json(path, rec)
  log.info("stage %-18s finished in %.0f s", name, rec["seconds"])
  return rec


def _copy(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(c.to_dict())


def _write_config(sub: str, c: ml_collections.ConfigDict) -> None:
  fileio.write_text(os.path.join(sub, "config.json"), c.to_json_best_effort(indent=1))


def _tokenizer(config):
  from sbp_jax.generate.text_codec import make_tokenizer  # pylint: disable=g-import-not-at-top
  return make_tokenizer(config.tokenizer)


# -- stages --------------------------------------------------------------------------------

def corpus_seed(config) -> int:
  """The concept corpus's seed: experiment.concepts.seed, or config.seed where that is -1.
  A fixed corpus seed lets seeds vary only training (init, data order, sampling)."""
  seed = int(config.experiment.concepts.get("seed", -1))
  return int(config.seed) if seed < 0 else seed


def prepare_data(config, sub: str) -> dict:
  """D_pretrain (optionally a seeded subset of the real files, as in the demo, where
  the oracle gets the whole corpus) and its unique-token count."""
  e = config.experiment
  heldout_files = ""
  if e.get("concepts"):  # the thesis 3.6 testbed, generated into this stage's directory
    from sbp_jax.sbp import concepts  # pylint: disable=g-import-not-at-top
    g = e.concepts.to_dict()
    g.pop("seed", None)
    paths = concepts.write_corpus(os.path.join(sub, "corpus"), seed=corpus_seed(config), **g)
    e = _copy(e)
    e.real_files, e.oracle_files, e.real_subset_docs = paths["d_pretrain"], paths["oracle"], 0
    heldout_files = paths["heldout"]
  docs = synthesize.SeedDocs(e.real_files, key="experiment.real_files")
  oracle_files = e.oracle_files or e.real_files
  real_files = e.real_files
  if e.real_subset_docs:
    if e.real_subset_docs >= len(docs):
      raise ValueError(f"experiment.real_subset_docs={e.real_subset_docs} must be below the "
                       f"{len(docs)} documents of {e.real_files}; the oracle needs more data.")
    rng = np.random.default_rng([config.seed, 0xD0C])
    keep = np.sort(rng.choice(len(docs), int(e.real_subset_docs), replace=False))
    oracle_docs = docs
    docs = docs.take(keep)
    real_files = os.path.join(sub, "d_pretrain.jsonl")
    write_jsonl(real_files, docs)
  else:
    oracle_docs = None
  if heldout_files:
    oracle_docs = synthesize.SeedDocs(oracle_files, key="experiment.oracle_files")
  rec = dict(real_files=real_files, oracle_files=oracle_files, real_docs=len(docs),
             real_unique_tokens=int(e.real_unique_tokens), heldout_files=heldout_files)
  if e.get("tokenizer_vocab_size"):
    rec["tokenizer"] = train_tokenizer(docs, int(e.tokenizer_vocab_size),
                                       os.path.join(sub, "spm"))
    config = with_tokenizer(config, rec["tokenizer"])
  if not e.real_unique_tokens or oracle_docs is not None:
    tok = _tokenizer(config)
    count = lambda ds: int(sum(len(tok.encode(d["text"])) + 1 for d in ds))  # + EOS
    if not e.real_unique_tokens:
      rec["real_unique_tokens"] = count(docs)
    if oracle_docs is not None:
      rec.update(oracle_docs=len(oracle_docs), oracle_unique_tokens=count(oracle_docs))
  return rec


def train_tokenizer(docs, vocab_size: int, prefix: str) -> str:
  """A BPE SentencePiece model trained on D_pretrain alone, as a pretraining corpus
  gets its own tokenizer. On the concept corpus it makes names, attributes and values
  single tokens (the demo corpus's 4,096 pieces split them into up to 5), so the
  synthesizer's copies and attribute-value pairings are one-token decisions."""
  from sbp_jax.data.tokenizer import train_small_corpus_sentencepiece  # pylint: disable=g-import-not-at-top
  return train_small_corpus_sentencepiece((d["text"] for d in docs), prefix, vocab_size)


def with_tokenizer(config, path: str) -> ml_collections.ConfigDict:
  """config with `path` as its one tokenizer (every later stage reads config.tokenizer; the
  pair stage's near-duplicate rule keeps pair.select.tokenizer where that is set)."""
  c = _copy(config)
  c.tokenizer.update(kind="sentencepiece", path=path)
  return c


def train_stage(cfg: ml_collections.ConfigDict, sub: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from sbp_jax.train.loop import train  # pylint: disable=g-import-not-at-top
  hist = train(cfg, sub)
  done = int(jax.device_get(hist["state"].step))
  if done < int(cfg.train.num_steps):
    raise SyntheticDataShort(
        f"{sub}: training stopped at step {done} of {cfg.train.num_steps}: its never-repeated "
        "(synthetic) data ran out, so this arm would not be compute-matched. Synthesize more "
        "(experiment.synthesis_margin) and delete this stage's directory before re-running.")
  losses = hist["loss"]
  last = max(losses) if losses else None
  return dict(checkpoints=os.path.join(sub, "checkpoints"), num_steps=int(cfg.train.num_steps),
              tokens=int(cfg.train.num_steps) * int(cfg.train.global_batch_size) *
              int(cfg.train.seq_len),
              final_loss=float(losses[last]) if last is not None else None)


def pair_stage(config, real_files, sub: str) -> dict:
  """SBP step 1 (the `pair` job of sbp_jax.sbp.pair) on D_pretrain."""
  from sbp_jax.sbp import pair as pair_job  # pylint: disable=g-import-not-at-top
  c = _copy(config)
  c.job = "pair"
  c.pair.corpus = real_files
  _write_config(sub, c)
  stats = pair_job.run(c, sub)
  purity = concept_purity(real_files, os.path.join(sub, "pairs", "pairs-*.jsonl"))
  return dict(concept_purity=purity, pairs_files=os.path.join(sub, "pairs", "pairs-*.jsonl"), num_pairs=int(stats["kept"]),
              mean_similarity_kept=stats.get("mean_similarity_kept"),
              mean_similarity_random=stats.get("mean_similarity_random"))


def concept_purity(real_files, pairs_files) -> float | None:
  """Fraction of pairs whose two documents share a concept, for a corpus whose records
  carry one (the generated testbed); None otherwise."""
  concept = {str(r["id"]): r.get("concept") for p in fileio.glob(real_files)
             for r in read_jsonl(p)}
  pairs = _read_all(pairs_files)
  if not pairs or None in concept.values():
    return None
  return float(np.mean([concept[p["d1_id"]] == concept[p["d2_id"]] for p in pairs]))


def random_pairs_stage(real_files, num_pairs: int, seed: int, sub: str) -> dict:
  """The B.1 ablation's training data: each d1 with a random other document."""
  docs = synthesize.SeedDocs(real_files, key="experiment.real_files")
  n = len(docs)
  rounds = max(1, math.ceil(num_pairs / n))  # pairing rounds until num_pairs pairs exist
  d1 = np.tile(np.arange(n), rounds)
  d2 = np.concatenate([quality.random_pairs(n, seed + r) for r in range(rounds)])
  pick = np.random.default_rng([seed, 0x9A1]).permutation(len(d1))[:num_pairs]
  rows = [{"d1": a["text"], "d2": b["text"], "d1_id": a["id"], "d2_id": b["id"]}
          for a, b in zip(docs.take(d1[pick]), docs.take(d2[pick]))]
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
                              "dropped_repetitive", "dropped_copies", "repetitive_rate")},
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
    # Score in windows no longer than the arms trained on (model.max_seq_len may be longer,
    # for synthesizer-tuning's d1 + d2).
    c.eval.max_len = min(int(c.eval.get("max_len", 0) or c.model.max_seq_len),
                         int(config.train.seq_len))
    done = run_stage(sub, name, lambda s, c=c: dict(results=eval_jobs.run_eval(c, s)))
    runs.append((name, done["results"]))
  t = report.combine(runs, "baseline", "oracle" if "oracle" in arms else "")
  return dict(columns=t["columns"], combined=t, table=report.format_table(t))


def heldout_stage(arms: dict[str, dict]) -> dict:
  """Held-out perplexity of each arm at its last step (the trainer's eval over data.eval)."""
  rows = {}
  for name, rec in arms.items():
    ev = fileio.read_json(os.path.join(os.path.dirname(rec["checkpoints"]), "history.json"))["eval"]
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
  return [r for p in fileio.glob(files) for r in read_jsonl(p)]


def _pick(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """k of range(n), uniformly without replacement, sorted."""
  return np.sort(rng.permutation(n)[:k])


def sample_records(files: str, k: int, rng: np.random.Generator) -> list[dict]:
  """k records of JSON-lines files (a glob), uniformly without replacement, in file
  order; read by byte offset, so the files are never loaded whole."""
  index = fileio.JsonlIndex(fileio.glob(files))
  return [r for _, _, r in index.take(_pick(len(index), k, rng))]


def quality_stage(config, real_files, sbp_files, random_files, pairs_files, sub: str,
                  unfiltered: dict | None = None) -> dict:
  """Table 3.3 columns for SBP outputs, random-pair outputs and real data; Table B.1 means.

  unfiltered: row name -> the synthesis filter's repetitive_rate (over every output,
  before the filter dropped the repetitive ones)."""
  q = config.quality
  k = int(q.sample_docs)
  docs = synthesize.SeedDocs(real_files, key="experiment.real_files")
  tok = _tokenizer(config)
  tokenize = lambda t: tok.encode(quality.normalize(t))  # the thesis: normalise, then tokenize
  embed = make_quality_embedder(config)
  rng = np.random.default_rng([config.seed, 0x0A1])

  report, b1 = {}, {}
  for name, files in (("SBP synthetic", sbp_files), ("Random-pair synthetic", random_files)):
    if not files:
      continue
    rows = sample_records(files, k, rng)
    wanted = {r["seed_id"] for r in rows}
    by_id = {d["id"]: d["text"] for d in docs if d["id"] in wanted}  # one streamed pass
    report[name] = quality.quality_report(
        [r["text"] for r in rows], [by_id[r["seed_id"]] for r in rows], embed,
        irrelevance_threshold=float(q.irrelevance_threshold), duplicate_n=int(q.duplicate_n),
        tokenize=tokenize, seed=config.seed)
    if unfiltered and unfiltered.get(name) is not None:
      report[name]["repetition_before_filter"] = float(unfiltered[name])
  real = docs.take(_pick(len(docs), k, rng))
  report["Real data (D_pretrain)"] = quality.quality_report(
      [d["text"] for d in real], [], duplicate_n=int(q.duplicate_n), tokenize=tokenize,
      seed=config.seed)
  if pairs_files:
    pairs = sample_records(pairs_files, k, rng)
    if pairs:
      b1["paired"] = float(np.mean(quality.pair_similarities(
          [p["d1"] for p in pairs], [p["d2"] for p in pairs], embed)))
  partner = quality.random_pairs(len(docs), config.seed)
  idx = _pick(len(docs), k, rng)
  b1["random"] = float(np.mean(quality.pair_similarities(
      [d["text"] for d in docs.take(idx)], [d["text"] for d in docs.take(partner[idx])], embed)))
  for name, key in (("SBP synthetic", "generated_sbp"), ("Random-pair synthetic",
                                                          "generated_random")):
    if name in report:
      b1[key] = report[name]["similarity"]
  return dict(quality=report, b1=b1)


def make_quality_embedder(config):
  """The pairing stage's embedder (the thesis scores B.1 with its pairing embedder)."""
  from sbp_jax.sbp.pairing.embed import make_embedder  # pylint: disable=g-import-not-at-top
  return make_embedder(config)


def format_b1(b1: dict) -> str:
  cols = [("paired", "Paired docs"), ("random", "Random docs"), ("generated_sbp", "Generated (SBP)"),
          ("generated_random", "Generated (Random)")]
  head = f"{'Statistic':<12}" + "".join(f"{t:>20}" for _, t in cols)
  row = f"{'Mean':<12}" + "".join(f"{b1[k]:>20.3f}" if k in b1 else f"{'n.a.':>20}"
                                  for k, _ in cols)
  return head + "\n" + row


def _tuning_config(config, base_ckpt: str, pairs_files, task_name: str = "sbp_pairs",
                   num_steps: int = 0):
  st = config.synth_tune
  c = tuning.synthesizer_tuning_config(
      config, base_ckpt, pairs_files, num_steps=num_steps or int(st.num_steps), lr=float(st.lr),
      seq_len=int(st.seq_len), global_batch_size=int(st.global_batch_size),
      warmup_frac=float(st.warmup_frac), grad_accum_steps=int(st.get("grad_accum_steps", 0)),
      task_name=task_name)
  c.train.eval_every = 0  # the seed gate evaluates the synthesizer, on held-out pairs
  return c


def gate_split_stage(config, pairs_files, sub: str) -> dict:
  """Holds experiment.gate_pairs pairs out of synthesizer-tuning for the seed gate."""
  tune, gate = seed_gate.split_pairs(_read_all(pairs_files), int(config.experiment.gate_pairs),
                                     int(config.seed))
  paths = dict(tune_files=os.path.join(sub, "tune_pairs.jsonl"),
               gate_files=os.path.join(sub, "gate_pairs.jsonl"))
  write_jsonl(paths["tune_files"], tune)
  write_jsonl(paths["gate_files"], gate)
  return dict(paths, num_tune=len(tune), num_gate=len(gate))


def seed_gate_stage(config, checkpoint: str, gate_files: str, sub: str) -> dict:
  return seed_gate.measure(config, checkpoint, list(read_jsonl(gate_files)),
                           int(config.synth_tune.seq_len), sub)


def concept_fact_check(config, data: dict, stages: dict) -> dict:
  """On the concept testbed: how faithful each synthesizer's outputs are to their seed's
  concept (sbp_jax.sbp.concepts.fact_accuracy)."""
  from sbp_jax.sbp import concepts  # pylint: disable=g-import-not-at-top
  cs = concepts.make_concepts(int(config.experiment.concepts.num_concepts), corpus_seed(config))
  seed_concept = {str(r["id"]): r["concept"] for r in read_jsonl(data["real_files"])}
  out = {}
  for name, key in (("sbp", "synthesize"), ("random_pair_synth", "synthesize_random")):
    if key in stages:
      rows = _read_all(stages[key]["files"])
      out[name] = concepts.fact_accuracy([r["text"] for r in rows],
                                         [cs[seed_concept[r["seed_id"]]] for r in rows])
  return out


class SyntheticDataShort(RuntimeError):
  """A compute-matched arm would run out of never-repeated synthetic data."""


def check_synthetic_supply(synth: dict, needed_tokens: int) -> None:
  """The joint arm reads each synthetic token once: the supply must cover its share."""
  have = int(synth["kept_tokens"]) + int(synth["kept"])  # + one EOS per document
  if have < needed_tokens:
    raise SyntheticDataShort(
        f"synthesis kept {have} tokens but the joint arm reads {needed_tokens} synthetic tokens "
        "once each; it would end short of the compute-matched budget. Raise "
        "synthesize.max_batches_per_shard (outputs were dropped: see the synthesize stage's "
        "repetitive_rate and dropped_copies) or lower experiment.synthetic_tokens, and delete "
        "the synthesize/ stage.")


# -- the runner ----------------------------------------------------------------------------

STAGES = ("data", "baseline", "oracle", "pair", "synth_tune", "synthesize", "joint",
          "random_pairs", "synth_tune_random", "synthesize_random", "eval", "quality")


def run(config, workdir: str) -> dict:
  from sbp_jax import runs  # pylint: disable=g-import-not-at-top
  e = config.experiment
  if config.train.get("checkpoint_dir"):
    raise ValueError("train.checkpoint_dir is set, but the experiment keeps each training "
                     "stage's checkpoints in that stage's directory; leave it empty.")
  vocab = int(e.get("tokenizer_vocab_size", 0))
  if vocab < 0:
    raise InputError(f"experiment.tokenizer_vocab_size={vocab} must be 0 (use tokenizer.path) "
                     "or the size of the tokenizer to train on D_pretrain.")
  if vocab > int(config.model.vocab_size):
    raise InputError(f"experiment.tokenizer_vocab_size={vocab} exceeds model.vocab_size="
                     f"{config.model.vocab_size}; raise model.vocab_size to at least it, or "
                     "lower experiment.tokenizer_vocab_size.")
  # Every stage depends on the whole config (and its train stages check their own
  # identity too): any change to a finished experiment asks for a new workdir or --overwrite.
  runs.claim(workdir, "sbp_experiment", config, [k for k in config.keys()],
             STAGES + ("results.json", "results.txt"),
             ignore=("experiment.min_seed_nll_gap",))  # a check after a stage, not an output
  t0 = time.perf_counter()
  tcfg = config.train
  steps = joint.pretraining_steps(int(e.token_budget), int(tcfg.global_batch_size),
                                  int(tcfg.seq_len))
  data = run_stage(workdir, "data", lambda sub: prepare_data(config, sub))
  config = with_tokenizer(config, data["tokenizer"]) if data.get("tokenizer") else _copy(config)
  if data.get("heldout_files"):  # a generated corpus brings its own held-out split
    config.data.eval = [dict(name="heldout", format="text", files=data["heldout_files"])]
  if e.get("eval_points"):  # training dynamics: each arm evaluated this often over its budget
    config.train.eval_every = max(1, steps // int(e.eval_points))
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
    stages["gate_split"] = run_stage(workdir, "gate_split", lambda sub: gate_split_stage(
        config, stages["pair"]["pairs_files"], sub))
    stages["synth_tune"] = run_stage(workdir, "synth_tune", lambda sub: train_stage(
        _tuning_config(config, base_ckpt, stages["gate_split"]["tune_files"]), sub))
    stages["seed_gate"] = run_stage(workdir, "seed_gate", lambda sub: seed_gate_stage(
        config, stages["synth_tune"]["checkpoints"], stages["gate_split"]["gate_files"], sub))
    log.info("seed gate: d2 NLL %.3f given its d1, %.3f given a shuffled d1: gap %.3f "
             "nats/token", stages["seed_gate"]["true"], stages["seed_gate"]["shuffled"],
             stages["seed_gate"]["gap"])
    print(f"Seed NLL gap of the synthesizer: {stages['seed_gate']['gap']:.3f} nats/token "
          f"(minimum {float(e.min_seed_nll_gap)}).", flush=True)
    seed_gate.check(stages["seed_gate"], float(e.min_seed_nll_gap))
    # A little more than the mixture will draw: the synthetic stream must not run dry.
    target = math.ceil(synthetic_tokens * (1.0 + float(e.synthesis_margin)))
    stages["synthesize"] = run_stage(workdir, "synthesize", lambda sub: synthesize_stage(
        config, stages["synth_tune"]["checkpoints"], real_files, target,
        int(config.synthesize.tokens_per_shard), sub))
    check_synthetic_supply(stages["synthesize"], synthetic_tokens)
    from sbp_jax.data.mixture import plan_mixture  # pylint: disable=g-import-not-at-top
    plan = plan_mixture(int(e.token_budget), data["real_unique_tokens"], synthetic_tokens)
    stages["mixture"] = dict(real_rate=plan.real_rate, synthetic_rate=plan.synthetic_rate,
                             real_epochs=plan.real_epochs, synthetic_epochs=plan.synthetic_epochs)
    stages["joint"] = run_stage(workdir, "joint", lambda sub: train_stage(
        joint.text_arm_config(config, joint.joint_sources(
            real_files, stages["synthesize"]["files"], plan), steps), sub))

  random_files = None
  if e.random_pair_ablation:
    n_pairs = int(e.random_pairs) or int(stages.get("gate_split", {}).get("num_tune", 0)) or 1000
    stages["random_pairs"] = run_stage(workdir, "random_pairs", lambda sub: random_pairs_stage(
        real_files, n_pairs, int(config.seed), sub))
    stages["synth_tune_random"] = run_stage(workdir, "synth_tune_random", lambda sub: train_stage(
        _tuning_config(config, base_ckpt, stages["random_pairs"]["pairs_files"],
                       "sbp_random_pairs", int(e.get("ablation_tune_steps", 0))), sub))
    if "gate_split" in stages:  # the same gate pairs: a seed-blind synthesizer scores ~0
      stages["seed_gate_random"] = run_stage(workdir, "seed_gate_random", lambda sub:
                                             seed_gate_stage(
          config, stages["synth_tune_random"]["checkpoints"],
          stages["gate_split"]["gate_files"], sub))
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
      stages.get("pair", {}).get("pairs_files"), sub, unfiltered={
          "SBP synthetic": stages.get("synthesize", {}).get("repetitive_rate"),
          "Random-pair synthetic": stages.get("synthesize_random", {}).get("repetitive_rate")}))

  if e.get("concepts") and "synthesize" in stages:
    stages["fact_check"] = concept_fact_check(config, data, stages)
  curves = {name: effect_report.curve(rec) for name, rec in arms.items()}
  effect_report.plot(curves, os.path.join(workdir, PLOT_FILE))
  rep = effect_report.build(stages, curves)
  stages["report"] = rep
  text = format_results(stages)
  results = dict(stages=stages, wall_seconds=time.perf_counter() - t0)
  rep["wall_seconds"] = results["wall_seconds"]
  fileio.write_json(os.path.join(workdir, REPORT_FILE), rep)
  fileio.write_json(os.path.join(workdir, "results.json"), results)
  fileio.write_text(os.path.join(workdir, "results.txt"), text + "\n")
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
  rep = stages.get("report", {})
  ppl = rep.get("heldout_perplexity", {})
  if {"baseline", "sbp", "oracle"} <= set(ppl):
    share = rep["share_of_oracle_gain_heldout"]
    out.append(f"Held-out perplexity (trainer, last step): baseline {ppl['baseline']:.3f}, SBP "
               f"{ppl['sbp']:.3f}, oracle {ppl['oracle']:.3f}; SBP recovers "
               + ("n.a. (the oracle did not improve)" if share is None else f"{100 * share:.0f}%")
               + " of the oracle's gain.")
  if "seed_gate" in stages:
    g = stages["seed_gate"]
    line = (f"Seed gate: d2 NLL {g['true']:.3f} given its d1 vs {g['shuffled']:.3f} given a "
            f"shuffled d1 ({g['num_pairs']} held-out pairs): gap {g['gap']:.3f} nats/token")
    if "seed_gate_random" in stages:
      line += f"; random-pair synthesizer {stages['seed_gate_random']['gap']:.3f}"
    out.append(line + ".")
  if stages.get("pair", {}).get("concept_purity") is not None:
    out.append(f"Pairs sharing a concept: {100 * stages['pair']['concept_purity']:.1f}% of "
               f"{stages['pair']['num_pairs']}.")
  for name, f in stages.get("fact_check", {}).items():
    out.append(f"Concept fidelity ({name}): {100 * f['names_seed']:.0f}% of outputs name the seed's "
               f"concept; {100 * f['facts_right']:.0f}% of {f['facts_stated']} stated facts are "
               "its facts (chance 8%).")
  if "synthesize" in stages:
    s = stages["synthesize"]
    out.append(f"Synthesis: {s['kept']} docs / {s['kept_tokens']} tokens kept of {s['generated']} "
               f"generated ({100 * s['repetitive_rate']:.1f}% dropped as repetitive, "
               f"{100 * s.get('dropped_copies', 0) / max(s['generated'], 1):.1f}% as copies of "
               f"D_pretrain documents), {s['tokens_per_s'] or 0:.0f} generated tokens/s.")
  if "quality" in stages:
    out += ["", "== Synthetic-data quality (Table 3.3 layout, rule-based; lower is better)",
            quality.format_quality_table(stages["quality"]["quality"]),
            "", "== Seed-output embedding similarity (Table B.1)",
            format_b1(stages["quality"]["b1"])]
  out += ["", "Stage wall times: " + ", ".join(
      f"{k} {v['seconds']:.0f}s" for k, v in stages.items() if isinstance(v, dict)
      and "seconds" in v)]
  return "\n".join(out)
