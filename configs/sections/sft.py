"""The `sft` section: s1 SFT (sbp_jax/reasoning/sft.py), thesis B.4.5."""

import ml_collections


def sft_section(template: str = "chatml") -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.train_file = ""      # JSON lines {question, reasoning, answer}
  s.eval_file = ""
  s.task_name = "s1_sft"
  s.epochs = 5           # train.num_steps = epochs x ceil(records / global_batch_size)
  s.template = ml_collections.ConfigDict(dict(name=template, prompt=None, think_start=None,
                                              think_end=None, trace_end=None,
                                              answer_prefix=None, turn_end=None))
  return s
