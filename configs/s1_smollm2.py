"""s1 on SmolLM2-135M-Instruct (thesis chapter 4 / B.4.5 at CPU scale): budget forcing
before and after SFT on reasoning traces written here (job s1_smollm2,
sbp_jax/reasoning/s1_smollm2.py).

  launch/tpu_run.sh --config=configs/s1_smollm2.py          # size "cpu"
  launch/tpu_run.sh --config=configs/s1_smollm2.py:smoke    # minutes; the test's size

The import runs first when runs/import_smollm2/model.json is missing. Evaluation as in
configs/budget_forcing_smollm2.py (its reasoning-gym tasks, seed, chat prompt and "Final
Answer:" prefix; greedy sequential settings read off one shared decode), on the imported
model and again on the SFT'd one. Training questions: the same task families and sizes
drawn with s1.train_seed, the evaluation's questions removed, each with a program-written
trace checked against its gold (sbp_jax/reasoning/gym_traces.py: arithmetic operation by
operation, legs animal by animal, the sibling and friend puzzles of aiw; aiw's colleague
puzzle has no trace and is left out of training). SFT follows B.4.5 (configs/s1_sft_qwen32b.py):
epochs over the records, 5% warmup then cosine to 0, AdamW (0.9, 0.95), weight decay 1e-4,
loss on reasoning and answer only, nothing truncated, the model's own tokenizer, ChatML
delimiters; the answer follows "Final Answer: " as the evaluation prompts it. Writes
WORKDIR/before_after.{json,csv} and prints the two tables side by side.

Sizes:
  cpu:   60 evaluation questions, settings none / max=32 / max=64 / wait=2 under a 96-token
         thinking cap, no majority vote; 240 training questions drawn (221 traced: aiw's
         colleague puzzles and 3 evaluation questions drop out), 1 epoch at batch 4 and
         seq_len 288 (56 steps), lr 5e-5 (B.4.5's 1e-5 moves a 32B model over 315 steps).
         Measured on one core (the other busy): 30 minutes in all (base evaluation 8.5,
         SFT 15, SFT'd evaluation 6); accuracy 0.10 -> 0.40 without a budget
         (docs/usage.md, s1 on SmolLM2).
  smoke: 8 evaluation questions, 16 training questions, settings none / max=8 / wait=1 under
         a 16-token cap, 1 epoch at batch 8 and seq_len 288: checks the plumbing only.
  full:  what an accelerator should run: the 300 questions and 8 settings of
         budget_forcing_smollm2 with the majority vote, 2,000 training questions, 5 epochs
         at batch 16, lr 1e-5, bfloat16.
"""

import ml_collections

from configs import budget_forcing_smollm2
from configs.sections.sft import sft_section

SIZES = ("cpu", "smoke", "full")


def get_config(size: str = "cpu"):
  if size not in SIZES:
    raise ValueError(f"configs/s1_smollm2.py:{size}: choose one of {SIZES}.")
  c = budget_forcing_smollm2.get_config()
  c.job = "s1_smollm2"
  c.tokenizer.mask_pad = True     # SmolLM2 pads with its eos <|im_end|>: padding found by position
  # Training questions: as config.gym, from another seed; a re-check of the trace's last line
  # ("Wait, let me check: ...") closes a trace with probability p_recheck, a second one p^2.
  c.s1 = ml_collections.ConfigDict(dict(train_questions=240, train_seed=4321, p_recheck=0.2))
  c.sft = sft_section("chatml")
  c.sft.epochs = 1
  # The answer after the delimiter reads "Final Answer: 47", as budget_eval.answer_prefix
  # prompts it: training and evaluation see the same tokens.
  c.sft.template.answer_prefix = "\nFinal Answer: "
  c.data = ml_collections.ConfigDict(dict(kind="seqio", train=[], eval=[], pack=False))
  t = c.train
  t.seq_len, t.global_batch_size = 288, 4   # the longest cpu record: 269 tokens
  t.num_steps = 0                 # set from sft.epochs
  t.schedule, t.lr, t.end_lr, t.warmup_frac = "cosine", 5e-5, 0.0, 0.05
  t.b1, t.b2, t.weight_decay, t.clip_norm = 0.9, 0.95, 1e-4, 1.0
  t.log_every, t.eval_every, t.checkpoint_every, t.async_checkpoint = 5, 0, 25, False
  e = c.budget_eval
  c.gym.num_questions = 60
  e.thinking_cap = 96
  e.sequential.settings = ("none", "max=32", "max=64", "wait=2")
  e.parallel.ns = ()
  e.title = "SmolLM2-135M-Instruct before / after s1 SFT"
  if size == "smoke":
    c.gym.num_questions = 8
    c.s1.train_questions = 16
    t.global_batch_size = 8       # one row per device of the tests' 8 emulated devices
    e.thinking_cap, e.max_answer_tokens, e.batch_size = 16, 6, 8
    e.sequential.settings = ("none", "max=8", "wait=1")
    t.log_every = 1
  elif size == "full":
    c.gym.num_questions = 300
    c.s1.train_questions = 2000
    c.sft.epochs = 5
    c.model.dtype = "bfloat16"
    t.seq_len, t.global_batch_size, t.lr, t.checkpoint_every = 512, 16, 1e-5, 200
    e.thinking_cap = 256
    e.sequential.settings = budget_forcing_smollm2.get_config().budget_eval.sequential.settings
    e.parallel.ns = (1, 2, 4, 8, 16)
  return c
