"""Budget-forcing evaluation (s1, thesis 4.4 / Figure 4.5) of a trained or imported model.

  launch/tpu_run.sh --config=configs/s1_budget_eval.py \
    --config.generate.checkpoint=RUN/checkpoints --config.tokenizer.path=RUN/data/spm.model \
    --config.budget_eval.questions=questions.jsonl

Questions: JSON lines with "question" and a gold "answer" (numeric or A-D).
For an imported chat model (e.g. SmolLM2 via import_hf) use the ChatML
template: budget_eval.template.name="chatml" (delimiters <|im_start|>think /
<|im_start|>answer), generate.model_json=IMPORT/model.json,
tokenizer.kind="hf", tokenizer.path=IMPORT/tokenizer, and, for a model not
trained to answer after the delimiter, budget_eval.answer_prefix="Final Answer:".
"""

import ml_collections

from configs import generate_tiny


def section() -> ml_collections.ConfigDict:
  e = ml_collections.ConfigDict()
  e.questions = ""
  e.inline_questions = ()       # used when questions is empty (no gold answers: no accuracy)
  e.question_field = "question"
  e.answer_field = "answer"
  e.limit = 0                   # first N questions; 0 = all
  # SFT template (sbp_jax/reasoning/sft_data.py): "plain" (our special tokens) or "chatml";
  # any field (prompt, think_start, think_end, trace_end, answer_prefix, turn_end) may be set.
  e.template = ml_collections.ConfigDict(dict(name="plain", prompt=None, think_start=None,
                                              think_end=None, trace_end=None,
                                              answer_prefix=None, turn_end=None))
  e.answer_prefix = ml_collections.FieldReference(None, field_type=str)  # overrides template's
  e.answer_stops = ("<|im_end|>",)  # the answer ends at the first of these
  e.wait = "Wait"
  # Bound on thinking without a max budget ("none", "wait=K"): twice the largest max, so the
  # Wait rows can extrapolate past every max=N row (Figure 4.5a) instead of being cut below.
  e.thinking_cap = 8192
  e.max_answer_tokens = 128     # "\boxed{...}" after a short closing derivation fits
  e.batch_size = 64             # rows per budget_force call
  # (a) sequential: "max=N" rows, then "wait=K" rows (Figure 4.5a: 2/4/6 Waits).
  # Greedy settings without a minimum share one thinking decode (bf_eval.sequential).
  e.sequential = ml_collections.ConfigDict(dict(
      temperature=0.0, top_p=1.0, shared_trace=True,
      settings=("max=512", "max=1024", "max=2048", "max=4096", "none", "wait=2", "wait=4",
                "wait=6")))
  # (b) parallel: n_max = max(ns) samples per question at temperature 1, majority vote.
  e.parallel = ml_collections.ConfigDict(dict(
      temperature=1.0, top_p=1.0, setting="none", ns=(1, 2, 4, 8, 16, 32, 64),
      questions_per_part=16, limit=0))  # limit: vote on the first N questions only (0: all)
  e.plot = True
  e.title = ""
  return e


def get_config():
  c = generate_tiny.get_config()
  c.job = "budget_eval"
  c.budget_eval = section()
  return c
