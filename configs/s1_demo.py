"""s1 end to end on CPU: arithmetic traces -> SFT of the tiny model -> budget forcing.

  launch/tpu_run.sh --config=configs/s1_demo.py   (writes runs/s1_demo/)

Generates questions like "Left to right: 3+8*4+7" with exact step-by-step
traces (sbp_jax/reasoning/arith_data.py), SFTs the tiny model on them
(configs/s1_sft_tiny.py), then prints accuracy vs thinking tokens for
(a) sequential scaling by budget forcing (max thinking budgets, then 2/4/6
"Wait" extensions) and (b) parallel scaling by majority vote over n samples at
temperature 1, and plots both in runs/s1_demo/budget_eval/scaling.png.
"""

import ml_collections

from configs import generate_tiny, s1_budget_eval, s1_sft_tiny


def get_config():
  c = s1_sft_tiny.get_config()
  c.job = "s1_demo"
  # 6,000 questions x 5 epochs / batch 32 = 938 SFT steps; a step is re-checked ("Wait, ...")
  # with probability 0.2, and a re-check again with 0.2.
  c.s1_data = ml_collections.ConfigDict(dict(seed=0, n_train=6000, n_test=100, min_ops=2,
                                             max_ops=5, p_recheck=0.2,
                                             vocab_size=c.model.vocab_size))
  c.tokenizer = ml_collections.ConfigDict(dict(kind="sentencepiece", path=""))  # set by the job
  c.generate = generate_tiny.generation_section()
  e = c.budget_eval = s1_budget_eval.section()
  e.template.name = "plain"
  e.answer_stops = ("\n",)  # answers are one line
  e.thinking_cap = 128
  e.max_answer_tokens = 8
  # A question, up to 128 thinking tokens and the answer run past the 128 tokens SFT trains
  # on; the model's context (RoPE, no learned positions) is declared to hold that decode.
  c.model.max_seq_len = 256
  e.batch_size = 256
  e.sequential.settings = ("max=2", "max=6", "max=12", "max=18", "max=24", "max=32", "none",
                           "wait=2", "wait=4", "wait=6")
  e.parallel.ns = (1, 2, 4, 8, 16, 32, 64)
  e.parallel.questions_per_part = 50
  e.title = "s1 demo: tiny model SFT on arithmetic traces"
  return c
