"""Shared shape of the SBP compute-matched experiment configs (job `sbp_experiment`).

The paper-scale files (sbp_3b_200b, sbp_3b_1t, sbp_6b_1t) and the CPU demo
(demo_realtext_cpu) fill in the numbers; sbp_jax/sbp/experiment.py documents the stages.
"""

import ml_collections

from configs.base import get_base
from configs.sections.experiment import experiment_section, quality_section, synth_tune_section
from configs.sections.synthesize import synthesize_section
from configs.sections.tokenizer import tokenizer_section


def get_sbp_config(model: str) -> ml_collections.ConfigDict:
  c = get_base(model)
  c.job = "sbp_experiment"
  c.tokenizer = tokenizer_section()  # the one tokenizer: data, pairing shingles, counts, sampling
  c.data = ml_collections.ConfigDict(dict(kind="seqio", train=[], eval=[], pack=True))
  c.experiment = experiment_section()
  c.synth_tune = synth_tune_section()
  c.synthesize = synthesize_section()
  c.quality = quality_section()
  return c
