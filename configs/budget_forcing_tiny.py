"""Budget forcing (s1) on the tiny model: thinking lengths at several budgets.

The `budget_eval` job (sbp_jax.reasoning.bf_eval) with only its sequential sweep and
inline questions without gold answers, so it reports thinking lengths, not accuracy.
settings: "none", or comma-separated max=N (cap thinking at N tokens; max=0: no
thinking), min=N (mask the end of thinking until N tokens), wait=K (replace the end
of thinking by "Wait" up to K times). Questions with gold answers: budget_eval.questions.
"""

from configs import s1_budget_eval
from sbp_jax.data import special_tokens


def get_config():
  c = s1_budget_eval.get_config()
  e = c.budget_eval
  e.inline_questions = ("What is 7 times 8?", "Is 91 a prime number?",
                        "How many legs do three spiders have?", "What is 2 to the 10th power?")
  e.template.prompt = "Question: {question}\n"
  e.template.think_start = special_tokens.THINK_START  # Qwen style: "<|im_start|>think"
  e.template.think_end = special_tokens.THINK_END      # Qwen style: "<|im_start|>answer"
  e.answer_prefix = "Final Answer:"
  e.max_answer_tokens = 16
  e.thinking_cap = 128
  e.batch_size = 4
  e.sequential.settings = ("none", "max=8", "max=16", "max=32", "min=24", "min=8,wait=2",
                           "max=64,wait=4")
  e.parallel.ns = ()
  e.plot = False
  return c
