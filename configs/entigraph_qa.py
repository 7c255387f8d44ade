"""Closed-book QA on QuALITY-style questions (thesis 2.4.2, A.7.1): 5-shot chain of
thought, 64 sampled replies per question, one parseable reply picked at random;
plus log-likelihood scoring. QuALITY's released files load directly:
  launch/tpu_run.sh --config=configs/entigraph_qa.py:quality \
      --config.generate.checkpoint=runs/entigraph_cpt/checkpoints
":quality" asks the questions of entigraph_generate.QUALITY_ARTICLES (train + dev), the
same 265 articles the synthetic corpus was generated from.
(Sampling also works through an HTTP endpoint: --config.generator.kind=http.)
"""

import ml_collections

from configs import entigraph_generate


def get_config(articles: str = "demo"):
  """articles: "demo" or "quality" (as configs/entigraph_generate.py)."""
  c = entigraph_generate.get_config(articles)
  c.job = "entigraph_qa"
  c.generator.kind = "local"
  c.generator.style = "completion"
  c.qa = ml_collections.ConfigDict(dict(
      # the articles the corpus was generated from (QuALITY lines carry their questions)
      questions=(entigraph_generate.QUALITY_ARTICLES if articles == "quality"
                 else "data/entigraph_demo/questions.jsonl"),
      modes=("sample", "loglik"),
      k=64,               # replies sampled per question (A.7.1)
      shots=5,
      reasoning=True,     # chain of thought (A.7.1); False: answer-only prompts, a few tokens
      temperature=1.0,    # not stated in the thesis; sampling needs T > 0 for k to matter
      top_p=1.0,
      max_new_tokens=256,
      batch_questions=1,  # questions per generator call (k prompts each)
      loglik_shots=0,
      score_batch=8,
      max_questions=0))
  return c
