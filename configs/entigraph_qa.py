"""Closed-book QA on QuALITY-style questions (thesis 2.4.2, A.7.1): 5-shot chain of
thought, 64 sampled replies per question, one parseable reply picked at random;
plus log-likelihood scoring. QuALITY's released files load directly:
  launch/tpu_run.sh --config=configs/entigraph_qa.py \
      --config.qa.questions=/data/QuALITY.v1.0.1.htmlstripped.dev \
      --config.generate.checkpoint=runs/entigraph_cpt/checkpoints
(Sampling also works through an HTTP endpoint: --config.generator.kind=http.)
"""

import ml_collections

from configs import entigraph_generate


def get_config():
  c = entigraph_generate.get_config()
  c.job = "entigraph_qa"
  c.generator.kind = "local"
  c.generator.style = "completion"
  c.qa = ml_collections.ConfigDict(dict(
      questions="data/entigraph_demo/questions.jsonl",
      modes=("sample", "loglik"),
      k=64,               # replies sampled per question (A.7.1)
      shots=5,
      temperature=1.0,    # not stated in the thesis; sampling needs T > 0 for k to matter
      top_p=1.0,
      max_new_tokens=256,
      batch_questions=1,  # questions per generator call (k prompts each)
      loglik_shots=0,
      score_batch=8,
      max_questions=0))
  return c
