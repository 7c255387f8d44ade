"""The `pair` section: SBP step 1 (sbp_jax/sbp/pair.py) with the thesis's settings (B.1.1).

Embedding: Qwen3-Embedding-0.6B, imported with configs/import_hf.py (job
`import_hf`), loaded as an LM embedder from the import directory with its own
tokenizer, last-token pooled and normalised, whole documents up to the model's
context. Search: top-200 over ScaNN trees of sqrt(N) leaves per value shard, salted
key shards. Selection: similarity above 0.75, no per-d1 cap, and the 13-token
shingle near-duplicate rule in the job's tokenizer.
"""

import ml_collections


def pair_section() -> ml_collections.ConfigDict:
  p = ml_collections.ConfigDict()
  p.corpus = ""               # D_pretrain: JSON lines (glob or list)
  p.text_field = "text"
  p.id_field = "id"
  p.max_docs = 0              # 0 = all
  p.shard_size = 1_000_000    # docs per shard (= key shard; embedding and selection unit)
  p.runner = "beam"           # or "local" (one process, small corpora)
  p.beam_options = ()         # e.g. Dataflow / Flink flags (sbp_jax/sbp/pairing/beam.py)

  e = p.embedder = ml_collections.ConfigDict()
  e.kind = "lm"               # "lm": a decoder checkpoint; "encoder": a BERT-family HF dir
  e.import_dir = ""           # kind="lm": an import's output (model.json, checkpoints/, tokenizer/)
  e.pooling = "last"          # kind="lm": "last" (Qwen3-Embedding) or "mean" (of `layer`)
  e.layer = -1                # kind="lm": block output to pool (-1 = last)
  e.max_len = 0               # tokens per document; 0 = the model's context (whole documents)
  e.batch_size = 32
  e.checkpoint = ""           # kind="lm" without import_dir: checkpoints dir ("" = random init)
  e.model_json = ""           # kind="lm" without import_dir: model fields ("" = config.model)
  e.path = ""                 # kind="encoder": BERT dir ("" = the bundled all-MiniLM-L6-v2)

  s = p.search = ml_collections.ConfigDict()
  # Scoring, measured with benchmarks/pairing.py on 1M clustered 256-d vectors, k=200, tree of
  # 1000 leaves, 800 candidates reordered in float32: AH (4-bit codes per 2 dims, int8 lookup
  # tables) and int8 scalar quantization (the thesis's 8-bit) gave the same recall@200 (0.945
  # at 30 leaves searched: recall is bound by the leaves searched, reordering fixes the
  # scores), but AH answered ~6x more queries/s (1,559 vs 260 q/s); 60 leaves (6%, the
  # default leaves_frac) gave 0.954 at 80x exact.
  s.scoring = "ah"
  s.k = 200                   # neighbours per document
  s.num_leaves = 0            # 0 = sqrt(N) per value shard, as in the thesis
  s.leaves_to_search = 0      # 0 = ceil(leaves_frac * num_leaves)
  s.leaves_frac = 0.06
  s.reorder = 0               # 0 = reorder_mult * k candidates rescored in float32
  s.reorder_mult = 4
  s.min_tree_size = 1000      # smaller value shards are scanned without a tree
  s.num_value_shards = 16     # capped at the number of docs shards
  s.num_salts = 16

  sel = p.select = ml_collections.ConfigDict()
  sel.alpha = 0.75            # similarity threshold, for Qwen3-Embedding-0.6B
  sel.cap = 0                 # pairs per d1 (0 = no cap)
  sel.shingle = 13
  sel.hist_bins = 40
  # The near-duplicate rule's tokenizer: unset = the job's `tokenizer` (sbp_jax/sbp/pair.py).
  sel.tokenizer = ml_collections.ConfigDict(dict(kind="", path=""))
  p.random_pairs = 10000      # the random-pair ablation's pairs (Table B.1)
  return p
