"""Job `generate` (prompts JSONL -> completions JSONL), and the model loading that the
budget-forcing job (`budget_eval`, sbp_jax.reasoning.bf_eval) shares with it.

Jobs load the model from `config.generate.checkpoint` (a checkpoints dir written
by training or by the import job; empty = random init from config.seed, for
demos) and the tokenizer from `config.tokenizer`.
"""

from __future__ import annotations

import logging
import os

import flax.linen as nn
import jax

from sbp_jax import fileio, runs, validate
from sbp_jax.errors import InputError
from sbp_jax.fileio import read_jsonl, write_jsonl
from sbp_jax.generate.chat import prompt_formatter
from sbp_jax.generate.sampler import Sampler, SamplingParams
from sbp_jax.generate.text_codec import check_fits, make_tokenizer
from sbp_jax.model import ModelConfig, Transformer, boxed_params
from sbp_jax.parallel import make_rules, mesh_context, mesh_from_config, param_shardings

log = logging.getLogger(__name__)


def load_params(cfg: ModelConfig, checkpoint: str, mesh, rules, seed: int = 0):
  """Params from a checkpoints dir (latest step), sharded for `mesh`; random if empty."""
  # pylint: disable-next=g-import-not-at-top
  from sbp_jax.train.checkpoint import Checkpointer, check_checkpoint
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
  check_checkpoint("generate.checkpoint", checkpoint)
  ckpt = Checkpointer(checkpoint, every=1, keep=1, async_save=False)
  step = ckpt.latest_step()
  return ckpt.restore_params(step, abstract)


def check_model_inputs(config):
  """The model files a generating job reads, checked before it claims its workdir;
  returns the tokenizer."""
  g = config.generate
  if g.get("model_json") and not fileio.exists(g.model_json):
    raise InputError(f"generate.model_json={g.model_json!r} does not exist; point it at the "
                     "model.json an import job wrote, or clear it to use config.model.")
  if g.checkpoint:
    from sbp_jax.train.checkpoint import check_checkpoint  # pylint: disable=g-import-not-at-top
    check_checkpoint("generate.checkpoint", g.checkpoint)
  return make_tokenizer(config.tokenizer)  # a missing or corrupt tokenizer file fails here


def model_config(config) -> ModelConfig:
  """The model fields: from generate.model_json (written by an import job) or config.model."""
  g = config.get("generate") or {}
  if g.get("model_json"):
    return ModelConfig.from_dict({**fileio.read_json(g["model_json"]), "dtype": config.model.dtype})
  return ModelConfig.from_dict(config.model)


def make_sampler(config, checkpoint: str | None = None, mesh=None) -> Sampler:
  """The sampler of model_config(config) with config.tokenizer.

  checkpoint: default generate.checkpoint. mesh: default config.mesh (synthesis
  passes one over this host's own devices: hosts synthesize independently).
  """
  cfg = model_config(config)
  mesh = mesh if mesh is not None else mesh_from_config(config.mesh)
  rules = make_rules(config.mesh.get("rules"))
  tok = make_tokenizer(config.tokenizer)
  check_fits(tok, cfg.vocab_size)
  if checkpoint is None:
    checkpoint = config.generate.checkpoint
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
    raise InputError(f"{path} does not exist; expected JSON lines with a {field!r} field.")
  return list(read_jsonl(path, (field,)))


GENERATE_KEYS = ("model", "generate", "tokenizer", "seed")


def fit_prompt(ids: list[int], new_tokens: int, context: int, g,
               row: int) -> tuple[list[int], int]:
  """(ids, tokens cut): with generate.truncate_prompts the prompt's start is cut so
  that prompt + new tokens fit the context (model.max_seq_len); else too long is an error."""
  room = context - int(new_tokens)
  if len(ids) <= room:
    return ids, 0
  if not g.get("truncate_prompts", False) or room < 1:
    validate.context_fits(
        f"generate.prompts row {row}", len(ids), int(new_tokens), context,
        "shorten the prompt, lower generate.max_new_tokens, or set "
        "generate.truncate_prompts=True to keep the prompt's end (recorded per row as "
        "prompt_truncated_tokens).")
  return ids[len(ids) - room:], len(ids) - room


def run_generate(config, workdir: str) -> None:
  """Writes workdir/outputs/part-NNNNN.jsonl, one per `shard_size` prompts; a re-run
  skips finished parts."""
  g = config.generate
  validate.positive("generate.batch_size", g.batch_size)
  validate.positive("generate.shard_size", g.shard_size)
  validate.positive("generate.max_new_tokens", g.max_new_tokens, allow_zero=True)
  if not g.prompts:
    raise InputError("generate.prompts is empty; set it to a JSON lines file with a "
                     f"{g.get('prompt_field', 'prompt')!r} field per line.")
  rows = read_prompts(g.prompts, g.get("prompt_field", "prompt"))
  sp = sampling_params(g)
  tok = check_model_inputs(config)
  field = g.get("prompt_field", "prompt")
  fmt = prompt_formatter(config)
  context = int(model_config(config).max_seq_len)
  prompts = [fit_prompt(tok.encode(fmt(r[field])), sp.max_new_tokens, context, g, i)
             for i, r in enumerate(rows)]  # every prompt checked before any compute
  runs.claim(workdir, "generate", config, GENERATE_KEYS, ("outputs",))
  out_dir = os.path.join(workdir, "outputs")
  fileio.makedirs(out_dir)
  sampler = None
  for s, start in enumerate(range(0, len(rows), g.shard_size)):
    path = os.path.join(out_dir, f"part-{s:05d}.jsonl")
    if fileio.exists(path):
      continue
    sampler = sampler or make_sampler(config)
    shard = rows[start:start + g.shard_size]
    results = []
    for b in range(0, len(shard), g.batch_size):
      batch = shard[b:b + g.batch_size]
      ids = prompts[start + b:start + b + len(batch)]
      outs = sampler.generate([x for x, _ in ids], sp, seed=config.seed + start + b)
      results += [{**r, "completion": o.text, "num_tokens": len(o.tokens),
                   "finish_reason": o.finish_reason,
                   **({"prompt_truncated_tokens": cut} if cut else {})}
                  for r, o, (_, cut) in zip(batch, outs, ids)]
    write_jsonl(path, results)
    log.info("Wrote %s (%d completions)", path, len(results))
