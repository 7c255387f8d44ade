"""SBP's final step: joint pretraining on {D_pretrain, S_pretrain} (thesis 3.5.1).

Same model, token budget and schedule as the repetition baseline; only the
data differs. The mixture helper of the data layer turns (budget, unique real
tokens, synthetic tokens) into sampling rates under the rule that synthetic
documents are seen at most once while real documents repeat (200B budget, 10B
real, 75B synthetic: 37.5% of the budget on synthetic data, real data seen
12.5 times).
"""

from __future__ import annotations

import ml_collections


def pretraining_steps(token_budget: int, global_batch_size: int, seq_len: int) -> int:
  """Steps that spend `token_budget` tokens (every arm of the comparison uses this)."""
  per_step = global_batch_size * seq_len
  steps = token_budget // per_step
  if steps < 1:
    raise ValueError(f"experiment.token_budget={token_budget} is less than one step "
                     f"({global_batch_size} x {seq_len} = {per_step} tokens).")
  return int(steps)


def text_arm_config(base: ml_collections.ConfigDict, sources: list[dict],
                    num_steps: int) -> ml_collections.ConfigDict:
  """A `train` config of `base` on the given text sources for `num_steps`."""
  c = ml_collections.ConfigDict(base.to_dict())
  c.job = "train"
  c.train.num_steps = int(num_steps)
  c.train.init_from = ""
  if not c.train.eval_every:  # every arm reports held-out loss at its last step
    c.train.eval_every = int(num_steps)
  c.data.train = [dict(s) for s in sources]
  return c


def joint_sources(real_files, synthetic_files, plan) -> list[dict]:
  """The mixture's two text sources with the token shares of `plan` (a
  sbp_jax.data.mixture.MixturePlan); the synthetic one is read once (the data
  layer ends the stream rather than repeat it, so synthesize a little more than
  plan.synthetic_tokens)."""
  return [
      dict(name="sbp_real", format="text", files=real_files, weight=float(plan.real_rate)),
      dict(name="sbp_synthetic", format="text", files=synthetic_files,
           weight=float(plan.synthetic_rate), synthetic=True),
  ]
