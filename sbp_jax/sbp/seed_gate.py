"""The mid-evaluation gate before synthesis (thesis B.2.3): does the synthesizer use d1?

Before spending compute on synthesis, the thesis checks a small sample for
pair relevance. Its rule-free counterpart here: on pairs held out of
synthesizer-tuning, d2's NLL given its own d1 against d2's NLL given another
pair's d1 (a derangement of the d1s). A synthesizer that ignores its seed scores
both alike; the gap, in nats per d2 token, must reach experiment.min_seed_nll_gap.
"""

from __future__ import annotations

import math
import os

import numpy as np

from sbp_jax.fileio import read_jsonl, write_jsonl


class SeedGateError(RuntimeError):
  """The synthesizer's seed NLL gap is below the configured minimum."""


def split_pairs(rows: list[dict], num_gate: int, seed: int) -> tuple[list[dict], list[dict]]:
  """(tuning pairs, gate pairs): num_gate pairs drawn at random are held out of tuning.

  At most a quarter of the pairs is held out, so tuning keeps most of them.
  """
  if len(rows) < 8:
    raise ValueError(f"the pair stage kept {len(rows)} pairs; the seed gate and tuning need at "
                     "least 8 (lower pair.select.alpha or add documents).")
  k = min(int(num_gate), len(rows) // 4)
  order = np.random.default_rng([seed, 0x6A7E]).permutation(len(rows))
  gate = set(order[:k].tolist())
  return ([r for i, r in enumerate(rows) if i not in gate],
          [r for i, r in enumerate(rows) if i in gate])


def shuffled_seeds(rows: list[dict], seed: int) -> list[dict]:
  """The same d2s, each after another pair's d1 (no pair keeps its own)."""
  from sbp_jax.sbp.quality import random_pairs  # pylint: disable=g-import-not-at-top
  partner = random_pairs(len(rows), seed)
  return [dict(r, d1=rows[int(partner[i])]["d1"]) for i, r in enumerate(rows)]


def pairs_nll(config, checkpoint: str, files: dict[str, str], seq_len: int) -> dict[str, float]:
  """Mean NLL per d2 token (d2 and EOS, as tuning's loss) of each pairs file, one pass."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate.generate_job import load_params  # pylint: disable=g-import-not-at-top
  from sbp_jax.model import ModelConfig, Transformer  # pylint: disable=g-import-not-at-top
  from sbp_jax.parallel import make_rules, mesh_from_config  # pylint: disable=g-import-not-at-top
  from sbp_jax.train.loop import eval_batches, evaluate  # pylint: disable=g-import-not-at-top
  from sbp_jax.train.step import make_eval_step  # pylint: disable=g-import-not-at-top
  from sbp_jax.data import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  cfg = ModelConfig.from_dict(dict(config.model, max_seq_len=max(int(config.model.max_seq_len),
                                                                   seq_len)))
  mesh, rules = mesh_from_config(config.mesh), make_rules(config.mesh.get("rules"))
  params = load_params(cfg, checkpoint, mesh, rules, int(config.seed))
  eval_fn = make_eval_step(Transformer(cfg), mesh, rules)
  batch = int(config.train.global_batch_size)
  out = {}
  for name, path in files.items():
    n_tok = sum(len(r["d1"]) + len(r["d2"]) for r in read_jsonl(path)) // 3 + 64  # > ids
    tcfg = ml_collections.ConfigDict(dict(seq_len=seq_len, eval_batch_size=batch,
                                          global_batch_size=batch,
                                          eval_steps=math.ceil(n_tok / (batch * seq_len)) + 1))
    data = ml_collections.ConfigDict(vocab_lib.with_job_tokenizer(config).data.to_dict())
    data.eval = [dict(name=f"seed_gate_{name}", format="pairs", files=path)]
    held_out = eval_batches(data, tcfg, int(config.seed))
    out[name] = float(evaluate(eval_fn, params, held_out, mesh, rules)["loss"])
  return out


def measure(config, checkpoint: str, gate_rows: list[dict], seq_len: int, sub: str) -> dict:
  """{"true", "shuffled", "gap"} in nats per d2 token over the held-out gate pairs."""
  paths = dict(true=os.path.join(sub, "gate_pairs.jsonl"),
               shuffled=os.path.join(sub, "gate_pairs_shuffled.jsonl"))
  write_jsonl(paths["true"], gate_rows)
  write_jsonl(paths["shuffled"], shuffled_seeds(gate_rows, int(config.seed)))
  nll = pairs_nll(config, checkpoint, paths, seq_len)
  return dict(true=nll["true"], shuffled=nll["shuffled"], gap=nll["shuffled"] - nll["true"],
              num_pairs=len(gate_rows))


def check(gate: dict, minimum: float) -> None:
  """Raises SeedGateError when the gap is below `minimum` (nats per d2 token)."""
  if gate["gap"] < minimum:
    raise SeedGateError(
        f"seed gate: d2's NLL given its own d1 is {gate['true']:.3f} and given a shuffled d1 "
        f"{gate['shuffled']:.3f} nats/token, a gap of {gate['gap']:.3f} below "
        f"experiment.min_seed_nll_gap={minimum}: the synthesizer ignores its seed, so its "
        "synthetic data would not be SBP's. Tune it longer or on more pairs "
        "(synth_tune.num_steps, pair.select.alpha), or lower the minimum.")
