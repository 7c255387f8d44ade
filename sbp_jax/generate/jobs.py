"""Jobs `generate` (prompts JSONL -> completions JSONL) and `budget_forcing`
(questions -> thinking/answers at each budget setting, with a summary table).

Both load the model from `config.generate.checkpoint` (a checkpoints dir written
by training or by the import job; empty = random init from config.seed, for
demos) and the tokenizer from `config.tokenizer`.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import flax.linen as nn
import jax

from sbp_jax import fileio
from sbp_jax.fileio import read_jsonl, write_jsonl
from sbp_jax.generate.budget_forcing import BudgetConfig, budget_force
from sbp_jax.generate.chat import prompt_formatter
from sbp_jax.generate.sampler import Sampler, SamplingParams
from sbp_jax.generate.tokenizer import make_tokenizer
from sbp_jax.model import ModelConfig, Transformer, boxed_params
from sbp_jax.parallel import make_rules, mesh_context, mesh_from_config, param_shardings

log = logging.getLogger(__name__)


def load_params(cfg: ModelConfig, checkpoint: str, mesh, rules, seed: int = 0):
  """Params from a checkpoints dir (latest step), sharded for `mesh`; random if empty."""
  from sbp_jax.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  model = Transformer(cfg)
  shardings = param_shardings(cfg, mesh, rules)
  init = lambda r: nn.meta.unbox(boxed_params(model, r))
  if not checkpoint:
    log.warning("generate.checkpoint is empty: using randomly initialised weights (seed %d).",
                seed)
    with mesh_context(mesh, rules):
      return jax.jit(init, out_shardings=shardings)(jax.random.key(seed))
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          jax.eval_shape(init, jax.random.key(0)), shardings)
  ckpt = Checkpointer(checkpoint, every=1, keep=1, async_save=False)
  step = ckpt.latest_step()
  if step is None:
    raise FileNotFoundError(f"generate.checkpoint={checkpoint!r} holds no checkpoint; point it at "
                            "a run's checkpoints/ dir or an import job's output checkpoints/.")
  return ckpt.restore_params(step, abstract)


def make_sampler(config, checkpoint: str | None = None, mesh=None) -> Sampler:
  """The sampler of config.model (or generate.model_json) with config.tokenizer.

  checkpoint: default generate.checkpoint. mesh: default config.mesh (synthesis
  passes one over this host's own devices: hosts synthesize independently).
  """
  g = config.get("generate") or {}
  if g.get("model_json"):  # the model fields written by the import job
    cfg = ModelConfig.from_dict({**fileio.read_json(g["model_json"]), "dtype": config.model.dtype})
  else:
    cfg = ModelConfig.from_dict(config.model)
  mesh = mesh if mesh is not None else mesh_from_config(config.mesh)
  rules = make_rules(config.mesh.get("rules"))
  tok = make_tokenizer(config.tokenizer)
  vocab = getattr(tok, "vocab_size", None)
  if vocab is not None and vocab > cfg.vocab_size:
    raise ValueError(f"tokenizer has {vocab} ids but model.vocab_size={cfg.vocab_size}; use the "
                     "model's own tokenizer (config.tokenizer) or a larger vocab.")
  if checkpoint is None:
    checkpoint = g["checkpoint"]
  params = load_params(cfg, checkpoint, mesh, rules, config.seed)
  return Sampler(cfg, params, tokenizer=tok, mesh=mesh, rules=rules)


def sampling_params(g) -> SamplingParams:
  """From a config section (generate or synthesize) with temperature, top_p,
  max_new_tokens and optionally top_k and stop_strings."""
  return SamplingParams(temperature=float(g.temperature), top_k=int(g.get("top_k", 0)),
                        top_p=float(g.top_p), max_new_tokens=int(g.max_new_tokens),
                        stop_strings=tuple(g.get("stop_strings", ()) or ()))


def read_prompts(path: str, field: str) -> list[dict]:
  if not fileio.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected JSON lines with a {field!r} field.")
  return list(read_jsonl(path, (field,)))


def run_generate(config, workdir: str) -> None:
  """Writes workdir/outputs/part-NNNNN.jsonl, one per `shard_size` prompts; a re-run
  skips finished parts."""
  g = config.generate
  rows = read_prompts(g.prompts, g.get("prompt_field", "prompt"))
  out_dir = os.path.join(workdir, "outputs")
  fileio.makedirs(out_dir)
  sampler, sp = None, sampling_params(g)
  field = g.get("prompt_field", "prompt")
  fmt = prompt_formatter(config)
  for s, start in enumerate(range(0, len(rows), g.shard_size)):
    path = os.path.join(out_dir, f"part-{s:05d}.jsonl")
    if fileio.exists(path):
      continue
    sampler = sampler or make_sampler(config)
    shard = rows[start:start + g.shard_size]
    results = []
    for b in range(0, len(shard), g.batch_size):
      batch = shard[b:b + g.batch_size]
      outs = sampler.generate_text([fmt(r[field]) for r in batch], sp,
                                   seed=config.seed + start + b)
      results += [{**r, "completion": o.text, "num_tokens": len(o.tokens),
                   "finish_reason": o.finish_reason} for r, o in zip(batch, outs)]
    write_jsonl(path, results)
    log.info("Wrote %s (%d completions)", path, len(results))


def parse_setting(spec: str) -> dict:
  """'none' | comma-separated 'max=N', 'min=N', 'wait=K' -> BudgetConfig fields."""
  keys = {"max": "max_thinking", "min": "min_thinking", "wait": "num_waits"}
  out = {}
  if spec.strip() in ("", "none"):
    return out
  for part in spec.split(","):
    k, _, v = part.partition("=")
    if k.strip() not in keys or not v.strip().isdigit():
      raise ValueError(f"budget.settings entry {spec!r}: {part!r} is not max=N, min=N or wait=K.")
    out[keys[k.strip()]] = int(v)
  return out


def run_budget_forcing(config, workdir: str) -> dict:
  """Per setting: workdir/budget_forcing/<setting>.jsonl and a summary.json with the
  mean / min / max thinking length (and accuracy when questions carry answers)."""
  b = config.budget
  if b.questions:
    rows = read_prompts(b.questions, "question")
  else:
    rows = [{"question": q} for q in b.inline_questions]
  # A reference answer moves to `reference`; `answer` is the model's.
  rows = [{**{k: v for k, v in r.items() if k != "answer"},
           **({"reference": str(r["answer"])} if "answer" in r else {})} for r in rows]
  out_dir = os.path.join(workdir, "budget_forcing")
  fileio.makedirs(out_dir)
  # With generate.chat the filled-in prompt_template becomes the user turn of the
  # model's chat template; thinking starts right after it.
  BudgetConfig(prompt_template=b.prompt_template)  # validates it
  fmt = prompt_formatter(config)
  prompts = [fmt(b.prompt_template.format(question=r["question"])) for r in rows]
  base = dict(think_start=b.think_start, think_end=b.think_end, answer_prefix=b.answer_prefix,
              wait=b.wait, max_answer_tokens=b.max_answer_tokens, thinking_cap=b.thinking_cap,
              prompt_template="{question}")
  sp = sampling_params(config.generate)
  sampler, summary = None, {}
  for spec in b.settings:
    bc = BudgetConfig(**base, **parse_setting(spec))
    path = os.path.join(out_dir, spec.replace(",", "_").replace("=", "") + ".jsonl")
    if not fileio.exists(path):
      sampler = sampler or make_sampler(config)
      res = []
      for i in range(0, len(rows), config.generate.batch_size):
        chunk = rows[i:i + config.generate.batch_size]
        outs = budget_force(sampler, prompts[i:i + config.generate.batch_size], bc, sp,
                            seed=config.seed + i)
        res += [{**r, **dataclasses.asdict(o)} for r, o in zip(chunk, outs)]
      write_jsonl(path, res)
    res = list(read_jsonl(path))
    lens = [r["thinking_tokens"] for r in res]
    s = dict(n=len(res), mean_thinking=sum(lens) / len(lens), min_thinking=min(lens),
             max_thinking=max(lens), mean_waits=sum(r["waits"] for r in res) / len(res),
             forced=sum(r["forced_end"] for r in res),
             budget=dict(max=bc.max_thinking, min=bc.min_thinking, waits=bc.num_waits))
    refs = [r.get("reference") for r in res]
    if all(isinstance(x, str) for x in refs):
      s["accuracy"] = sum(x.strip() in r["answer"] for x, r in zip(refs, res)) / len(res)
    summary[spec] = s
  fileio.write_json(os.path.join(out_dir, "summary.json"), summary)
  head = f"{'setting':<16}{'n':>5}{'mean':>8}{'min':>6}{'max':>6}{'waits':>7}{'forced':>8}"
  lines = [head] + [f"{k:<16}{v['n']:>5}{v['mean_thinking']:>8.1f}{v['min_thinking']:>6}"
                    f"{v['max_thinking']:>6}{v['mean_waits']:>7.2f}{v['forced']:>8}"
                    + (f"  acc {v['accuracy']:.3f}" if "accuracy" in v else "")
                    for k, v in summary.items()]
  print("\n".join(lines))
  return summary
