"""Jobs `eval` (one checkpoint on a suite -> results.json + table) and
`eval_table` (several results.json -> the Table 3.2 layout).

eval writes, under its workdir:
  eval/<task>.json                per task: metrics (a re-run with the same run
                                  identity, sbp_jax.runs, skips finished tasks)
  eval/<task>.predictions.jsonl   per example: prediction, log-likelihoods, ...
  results.json, results.txt       all tasks, and the printed table
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax

from sbp_jax import fileio
from sbp_jax.fileio import write_jsonl
from sbp_jax.eval import report
from sbp_jax.eval import formats
from sbp_jax.eval.records import read_records
from sbp_jax.eval.scorer import Scorer
from sbp_jax.generate.text_codec import check_fits, eos_ids_of, make_tokenizer
from sbp_jax.model import ModelConfig
from sbp_jax.parallel import make_rules, maybe_initialize_distributed, mesh_from_config

log = logging.getLogger(__name__)

TASK_KEYS = {"name", "format", "files", "fewshot_files", "num_fewshot", "limit", "seed",
             "max_new_tokens", "primary", "label", "tfds"}


def plain(x):
  """ConfigDicts, tuples and dicts -> JSON-ready dicts and lists."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  if isinstance(x, dict):
    return {str(k): plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [plain(v) for v in x]
  return x


def _write(path: str, text: str) -> None:
  if jax.process_index() != 0:
    return
  fileio.write_text(path, text)


def model_config(config) -> ModelConfig:
  e = config.eval
  if e.get("model_json"):  # model fields written by the import job
    fileio.require(e.model_json, "eval.model_json", "point it at the model.json an import job "
                   "wrote, or clear it to use config.model")
    return ModelConfig.from_dict({**fileio.read_json(e.model_json), "dtype": config.model.dtype})
  return ModelConfig.from_dict(config.model)


def resolve_prefix(spec, tok, vocab: int) -> tuple[int, ...]:
  """eval.prefix: 'none', 'eos' (the tokenizer's end-of-sequence id, which
  separates documents in training data) or an integer id."""
  spec = str(spec).strip()
  if spec in ("", "none"):
    return ()
  ids = (eos_ids_of(tok)[0],) if spec == "eos" else (int(spec),)
  if not 0 <= ids[0] < vocab:
    raise ValueError(f"eval.prefix={spec!r} is token id {ids[0]}, outside the model's vocabulary "
                     f"[0, {vocab}); use 'none' or a model whose vocabulary holds it.")
  return ids


def task_list(config) -> list[dict]:
  out, seen = [], set()
  for i, t in enumerate(config.eval.tasks):
    t = plain(t)
    unknown = sorted(set(t) - TASK_KEYS)
    if unknown:
      raise ValueError(f"eval.tasks[{i}] has unknown key(s) {unknown}; known: {sorted(TASK_KEYS)}.")
    if not t.get("name") or t.get("format") not in formats.EVALUATORS:
      raise ValueError(f"eval.tasks[{i}] needs a name and a format in {sorted(formats.EVALUATORS)}.")
    if t["name"] in seen:
      raise ValueError(f"eval.tasks: the name {t['name']!r} is used twice.")
    seen.add(t["name"])
    tf = dict(t.get("tfds") or {})
    if not t.get("files") and not tf.get("name"):
      raise ValueError(f"eval.tasks[{i}] ({t['name']}) needs `files` (local JSONL) or `tfds.name`.")
    out.append(t)
  return out


def load_task(t: dict) -> tuple[list[dict], list[dict] | None]:
  """(records, few-shot pool or None). Local files win; TFDS only when no files are given."""
  limit = int(t.get("limit", 0) or 0)
  tf = dict(t.get("tfds") or {})
  if t.get("files"):
    recs = read_records(t["files"], t["format"], limit)
  else:
    from sbp_jax.eval.tfds_source import load_tfds  # pylint: disable=g-import-not-at-top
    recs = load_tfds(tf["name"], tf.get("split", "test"), t["format"], tf.get("data_dir", ""),
                     bool(tf.get("download", False)), limit)
  pool = None
  if t.get("fewshot_files"):
    pool = read_records(t["fewshot_files"], t["format"])
  elif tf.get("fewshot_split") and not t.get("files"):
    from sbp_jax.eval.tfds_source import load_tfds  # pylint: disable=g-import-not-at-top
    pool = load_tfds(tf["name"], tf["fewshot_split"], t["format"], tf.get("data_dir", ""),
                     bool(tf.get("download", False)))
  return recs, pool


def make_generate(cfg: ModelConfig, params, tok, mesh, rules, prefix, batch_size: int):
  """Greedy short answers with the KV-cache sampler, stopped at a newline. Prompts
  are batched in (length, text) order so batches do not depend on input order."""
  from sbp_jax.generate.sampler import Sampler, SamplingParams  # pylint: disable=g-import-not-at-top
  sampler = Sampler(cfg, params, tokenizer=tok, mesh=mesh, rules=rules)

  def generate(prompts: list[str], max_new: int) -> list[str]:
    sp = SamplingParams(temperature=0.0, max_new_tokens=max_new, stop_strings=("\n",))
    ids = [list(prefix) + list(tok.encode(p)) for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), prompts[i]))
    out = [""] * len(ids)
    for b in range(0, len(order), batch_size):
      idx = order[b:b + batch_size]
      for i, c in zip(idx, sampler.generate([ids[i] for i in idx], sp)):
        out[i] = c.text
    return out
  return generate


def latest_step(checkpoint: str) -> int | None:
  if not checkpoint:
    return None
  from sbp_jax.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  ckpt = Checkpointer(checkpoint, every=1, keep=1, async_save=False)
  try:
    return ckpt.latest_step()
  finally:
    ckpt.close()


OUTPUTS = ("eval", "results.json", "results.txt")
IDENTITY_KEYS = ("eval", "model", "tokenizer", "seed")
# Batching and bucketing change how the scores are computed, not what they are.
HOW = ("eval.batch_size", "eval.generate_batch_size", "eval.min_bucket")


def identity_view(config, suite: list[dict]) -> dict:
  """The config with eval.tasks keyed by task name, so that the run identity names a
  changed task field (eval.tasks.<name>.<field>) and identifies each task's files."""
  view = plain(config)
  view["eval"]["tasks"] = {t["name"]: t for t in suite}
  return view


def check_task_files(suite: list[dict]) -> None:
  for i, t in enumerate(suite):
    for field in ("files", "fewshot_files"):
      if t.get(field):
        fileio.expand(t[field], f"eval.tasks[{i}].{field} ({t['name']})",
                      f"point it at the task's JSON-lines file(s) ({t['format']} format)")


def run_eval(config, workdir: str) -> dict:
  from sbp_jax import runs  # pylint: disable=g-import-not-at-top
  e = config.eval
  maybe_initialize_distributed(config.get("distributed"))
  suite = task_list(config)
  check_task_files(suite)
  cfg = model_config(config)
  mesh = mesh_from_config(config.mesh)
  rules = make_rules(config.mesh.get("rules"))
  tok = make_tokenizer(config.tokenizer)
  check_fits(tok, cfg.vocab_size)
  prefix = resolve_prefix(e.get("prefix", "none"), tok, cfg.vocab_size)
  if e.checkpoint:
    from sbp_jax.train.checkpoint import check_checkpoint  # pylint: disable=g-import-not-at-top
    check_checkpoint("eval.checkpoint", e.checkpoint)
  # Every task's records, read (and checked) before the claim: a bad line is named
  # before anything is written.
  loaded = {t["name"]: load_task(t) for t in suite}
  # Finished tasks are reused only under the same run identity (its checkpoint's steps,
  # every task's settings and files, the model and tokenizer).
  runs.claim(workdir, "eval", identity_view(config, suite), IDENTITY_KEYS, OUTPUTS,
             write_config=False, ignore=HOW)
  runs.record_config(workdir, config)
  out_dir = os.path.join(workdir, "eval")
  step = latest_step(e.checkpoint)

  results: dict = {"checkpoint": e.checkpoint, "step": step, "tasks": {}}
  scorer = generate = None
  for t in suite:
    path = os.path.join(out_dir, f"{t['name']}.json")
    if fileio.exists(path):
      results["tasks"][t["name"]] = fileio.read_json(path)["result"]
      log.info("%s: done earlier (%s)", t["name"], path)
      continue
    if scorer is None:
      from sbp_jax.generate.generate_job import load_params  # pylint: disable=g-import-not-at-top
      params = load_params(cfg, e.checkpoint, mesh, rules, config.seed)
      scorer = Scorer(cfg, params, mesh, rules, batch_size=int(e.batch_size),
                      max_len=int(e.get("max_len", 0) or cfg.max_seq_len),
                      min_bucket=int(e.get("min_bucket", 16)), pad_id=0)
    if t["format"] == "generative_qa" and generate is None:
      generate = make_generate(cfg, scorer.params, tok, mesh, rules, prefix,
                               int(e.get("generate_batch_size", 8)))
    ctx = formats.Context(scorer=scorer, tokenizer=tok, prefix=prefix,
                        rolling_overlap=int(e.get("rolling_overlap", 0)), generate=generate)
    recs, pool = loaded[t["name"]]
    opts = dict(seed=int(t.get("seed", config.seed)))
    if int(t.get("num_fewshot", -1)) >= 0:
      opts["num_fewshot"] = int(t["num_fewshot"])
    if t["format"] == "generative_qa":
      opts["max_new_tokens"] = int(t.get("max_new_tokens", 24))
    t0 = time.perf_counter()
    metrics, per = formats.evaluate_records(t["format"], recs, ctx, pool, **opts)
    primary, kind = formats.PRIMARY[t["format"]]
    primary = t.get("primary") or primary
    if primary not in metrics:
      raise ValueError(f"task {t['name']}: primary={primary!r} is not one of {sorted(metrics)}.")
    res = dict(format=t["format"], label=t.get("label") or t["name"], primary=primary, kind=kind,
               metrics=metrics, seconds=time.perf_counter() - t0)
    results["tasks"][t["name"]] = res
    if jax.process_index() == 0:  # as in _write
      write_jsonl(os.path.join(out_dir, f"{t['name']}.predictions.jsonl"), per)
    _write(path, json.dumps(dict(result=res), indent=1))
    log.info("%s: %s", t["name"], metrics)
  if scorer is not None:
    s = scorer.stats
    results["scoring"] = dict(s, tokens_per_s=s["scored_tokens"] / max(s["seconds"], 1e-9),
                              buckets=sorted(scorer.buckets_compiled))
  table = report.run_table(results)
  _write(os.path.join(workdir, "results.json"), json.dumps(results, indent=1))
  _write(os.path.join(workdir, "results.txt"), table + "\n")
  print(table)
  return results


def run_eval_table(config, workdir: str) -> dict:
  tc = config.table
  runs = []
  for r in tc.runs:
    r = plain(r)
    if not fileio.exists(r.get("results", "")):
      raise FileNotFoundError(f"table.runs entry {r.get('label')!r}: results={r.get('results')!r} "
                              "does not exist; point it at an eval job's results.json.")
    runs.append((r["label"], fileio.read_json(r["results"])))
  t = report.combine(runs, tc.baseline, tc.get("oracle", ""), tuple(tc.get("tasks", ()) or ()))
  text = report.format_table(t)
  _write(os.path.join(workdir, "table.json"), json.dumps(t, indent=1))
  _write(os.path.join(workdir, "table.txt"), text + "\n")
  print(text)
  return t
