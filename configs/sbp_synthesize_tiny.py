"""SBP synthesis (job `synthesize`) on its own: seed docs -> synthetic JSONL shards.

Defaults run the tiny byte-level model on CPU from random weights; for real
use point synthesize.checkpoint at a synthesizer-tuning run's checkpoints/,
tokenizer at its SentencePiece model and seed_files at D_pretrain, e.g.
  launch/tpu_run.sh --config=configs/sbp_synthesize_tiny.py \
    --config.synthesize.seed_files=data/demo_corpus/train.jsonl.gz
"""

import ml_collections

from configs.base import get_base


def synthesize_section() -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.checkpoint = ""             # synthesizer checkpoints dir; "" = random weights (demo only)
  s.seed_files = ""             # D_pretrain JSON lines (glob or list), {"text", "id"}
  s.text_field = "text"
  s.id_field = "id"
  s.output_dir = ""             # "" = <workdir>/synthetic
  s.target_tokens = 4096        # stop once this many synthetic tokens are kept
  s.tokens_per_shard = 1024     # the unit of resume and of host assignment
  s.max_batches_per_shard = 1000  # guard against a synthesizer whose outputs are all dropped
  s.batch_size = 8              # rows per sampler call (per host)
  s.max_prompt_tokens = 4096    # d1 is cut to this many tokens (thesis: docs <= 4,096)
  # Training feeds id 0 before each packed segment's first token (seqio's decoder feature
  # converter shifts targets right with 0), so the prompt starts with it too.
  s.prompt_start_ids = (0,)
  s.max_new_tokens = 4096       # d2 length cap; sampling stops earlier at end-of-sequence
  s.temperature = 1.0           # thesis B.1.1
  s.top_p = 0.9
  s.top_k = 0
  s.shingle = 13                # drop outputs repeating any 13-token shingle
  s.drop_unfinished = False     # also drop outputs cut at max_new_tokens
  s.ici = (-1, 1, 1)            # each host's own mesh over its local devices
  s.progress = True
  return s


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
