"""Budget forcing (s1) on the tiny model: thinking lengths at several budgets.

settings: "none", or comma-separated max=N (cap thinking at N tokens), min=N
(mask the end of thinking until N tokens), wait=K (replace the end of thinking
by "Wait" up to K times). Questions: JSON lines with "question" (and optional
"answer", scored by containment) in budget.questions, else the inline list.
"""

import ml_collections

from configs import generate_tiny
from sbp_jax.data import special_tokens


def get_config():
  c = generate_tiny.get_config()
  c.job = "budget_forcing"
  c.generate.temperature = 0.0
  c.generate.top_p = 1.0
  c.generate.batch_size = 4
  b = c.budget = ml_collections.ConfigDict()
  b.questions = ""
  b.inline_questions = ("What is 7 times 8?", "Is 91 a prime number?",
                        "How many legs do three spiders have?", "What is 2 to the 10th power?")
  b.prompt_template = "Question: {question}\n"
  b.think_start = special_tokens.THINK_START  # Qwen style: "<|im_start|>think"
  b.think_end = special_tokens.THINK_END      # Qwen style: "<|im_start|>answer"
  b.answer_prefix = "Final Answer:"
  b.wait = "Wait"
  b.max_answer_tokens = 16
  b.thinking_cap = 128
  b.settings = ("none", "max=8", "max=16", "max=32", "min=24", "min=8,wait=2", "max=64,wait=4")
  return c
