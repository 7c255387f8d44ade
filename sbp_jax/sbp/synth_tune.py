"""SBP step 2: the synthesizer-tuning run, as a train config (thesis 3.3.2, B.1.1).

Synthesizer-tuning is ordinary training with three differences, all data in
the config: parameters start from the base (baseline) checkpoint, the data is
the pairs task (d1 <|doc_sep|> d2 <eos>, loss on d2 and <eos> only, see
sbp_jax.data.tasks), and the learning rate is small and constant (5e-6 in the
thesis; it found cosine decay from a larger rate gave worse samples). The
context doubles (8,192) so a 4,096-token d1 and d2 both fit.
"""

from __future__ import annotations

import ml_collections


def synthesizer_tuning_config(base: ml_collections.ConfigDict, init_from: str, pairs_files, *,
                              num_steps: int, lr: float = 5e-6, seq_len: int = 8192,
                              global_batch_size: int | None = None, warmup_frac: float = 0.0,
                              task_name: str = "sbp_pairs",
                              grad_accum_steps: int | None = None) -> ml_collections.ConfigDict:
  """A `train` config: `base` (model, mesh, data vocab/eval) tuned on pairs from `init_from`.

  init_from: the base run's checkpoints/ dir. pairs_files: JSONL glob(s) with d1/d2.
  """
  if not init_from:
    raise ValueError("synthesizer-tuning needs init_from: the checkpoints/ dir of the base "
                     "(baseline) pretraining run.")
  c = ml_collections.ConfigDict(base.to_dict())
  c.job = "train"
  c.train.init_from = init_from
  c.train.schedule = "constant"
  c.train.lr = float(lr)
  c.train.warmup_frac = float(warmup_frac)
  c.train.seq_len = int(seq_len)
  c.train.num_steps = int(num_steps)
  if global_batch_size:
    c.train.global_batch_size = int(global_batch_size)
  if grad_accum_steps:  # twice the context: usually more microbatches than pretraining
    c.train.grad_accum_steps = int(grad_accum_steps)
  c.model.max_seq_len = max(int(c.model.max_seq_len), int(seq_len))
  c.data.train = [dict(name=task_name, format="pairs", files=pairs_files, weight=1.0)]
  return c
