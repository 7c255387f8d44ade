"""SBP synthesis (job `synthesize`) on its own: seed docs -> synthetic JSONL shards.

Defaults run the tiny byte-level model on CPU from random weights; for real
use point synthesize.checkpoint at a synthesizer-tuning run's checkpoints/,
tokenizer at its SentencePiece model and seed_files at D_pretrain, e.g.
  launch/tpu_run.sh --config=configs/sbp_synthesize_tiny.py \
    --config.synthesize.seed_files=data/demo_corpus/train.jsonl.gz
"""

import ml_collections

from configs.base import get_base
from configs.sections.synthesize import synthesize_section


def get_config():
  c = get_base("tiny")
  c.job = "synthesize"
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))
  c.synthesize = synthesize_section()
  c.synthesize.max_prompt_tokens = 256
  c.synthesize.max_new_tokens = 64
  return c
