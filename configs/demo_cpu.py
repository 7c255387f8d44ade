"""The SBP experiment on the latent-concept testbed of thesis 3.6, on CPU.

  launch/tpu_run.sh --config=configs/demo_cpu.py            # concepts shared
  launch/tpu_run.sh --config=configs/demo_cpu.py:control --workdir=runs/concepts_control

sbp_jax/sbp/concepts.py generates the corpus: D_pretrain has a few documents per
concept, the oracle many, held-out text is new documents of the same concepts.
The data stage trains a 768-piece tokenizer on D_pretrain (as a pretraining corpus
gets its own), so names, attributes and values are single tokens. The baseline
repeats D_pretrain ~34 times; the oracle has 12x its unique data (seen about 3
times). The corpus is fixed (concepts.seed), so --config.seed varies only training:
init, data order and sampling. In the control corpus no two documents share a
concept: pairing then finds no related documents, and the seed gate (or the pair
stage, when it keeps too few pairs) stops the run before synthesis.
"""

from configs.sbp_common import get_sbp_config
from configs.sbp_pair_demo import demo_pair_section

def concepts_section(shared: bool = True):
  import ml_collections  # pylint: disable=g-import-not-at-top
  g = ml_collections.ConfigDict()
  # 5 documents per concept (not 3, at the same 360-document D_pretrain) give pairing 500
  # same-concept pairs instead of 266: the synthesizer then states 85% of facts right, not
  # 68%, and SBP's share of the oracle's gain went from 13% to 30% on seed 0.
  g.num_concepts = 72
  g.pretrain_per_concept = 5
  g.oracle_per_concept = 60        # 12x D_pretrain's unique data
  g.heldout_per_concept = 3
  g.facts_per_doc = 4
  g.shared_concepts = shared
  g.seed = 0  # the corpus stays fixed across --config.seed (which varies training); -1 follows it
  return g


def get_config(size: str = "main"):
  """size: "main", "control" (no shared concepts) or "smoke" (tests)."""
  if size not in ("main", "control", "smoke"):
    raise ValueError(f"configs/demo_cpu.py:{size}: choose 'main', 'control' or 'smoke'.")
  c = get_sbp_config("tiny")
  c.model.update(vocab_size=768, num_layers=4, d_model=128, d_ffn=384, num_heads=4,
                 num_kv_heads=2, max_seq_len=512, dtype="float32", remat_policy="none")
  c.mesh.ici = (1, 1, 1)

  e = c.experiment
  e.concepts = concepts_section(size != "control")
  # The demo corpus's 4,096-piece tokenizer split names into ~5 pieces and "friend" into 3;
  # the synthesizer then gave 20-25% of its fact sentences a value of the wrong attribute
  # ("the food of X is bell"); with a tokenizer trained on D_pretrain, 3-5%.
  e.tokenizer_vocab_size = 768     # with 256 byte fallbacks and the special tokens
  e.token_budget = 140 * 16 * 256  # 573K tokens: the baseline sees D_pretrain ~34 times
  e.synthetic_tokens = 215_000     # 37.5% of the budget, the thesis share (19% measured worse)
  e.ablation_synthetic_tokens = 8_000
  e.ablation_tune_steps = 60       # the random-pair synthesizer: its seed gap and B.1 similarity
                                   # barely move after this (gap 0.195 after 200 steps)
  e.eval_points = 10
  e.min_seed_nll_gap = 0.1

  t = c.train
  t.seq_len = 256
  t.global_batch_size = 16
  t.lr = 3e-3
  t.end_lr = 3e-5
  t.warmup_frac = 0.05
  t.log_every = 20
  t.eval_steps = 5                 # the whole held-out split (216 docs, ~17K tokens)
  t.checkpoint_every = 100000
  t.peak_flops_per_device = 50e9

  st = c.synth_tune
  st.seq_len = 256
  st.global_batch_size = 16
  st.num_steps = 60                # ~4.5 passes over the pairs. 120 memorised them: half its
                                   # outputs were D_pretrain documents, SBP's share 21% not 41%
  st.lr = 1e-3
  st.warmup_frac = 0.0

  s = c.synthesize
  s.max_prompt_tokens = 128
  s.max_new_tokens = 128
  s.batch_size = 128
  s.temperature = 0.7               # thesis: 1.0 with top_p 0.9, which measured no better here
  s.top_p = 1.0                     # (seed 2, 120 tuning steps: 47% copies vs 50%, 93% of
                                    # stated facts right vs 94%)
  s.drop_seed_copies = True         # outputs that reproduce a D_pretrain document (~9% after
                                    # 60 tuning steps) would only add repetition
  s.tokens_per_shard = 16_384
  s.max_batches_per_shard = 200
  s.ici = (1, 1, 1)

  c.pair = demo_pair_section()
  c.pair.shard_size = 600
  c.pair.search.k = 10
  c.pair.select.cap = 0             # the thesis keeps every neighbour above alpha
  c.pair.select.alpha = 0.8         # MiniLM: same-concept docs ~0.86, others ~0.36 (99% pure)
  c.eval = {}

  q = c.quality
  q.sample_docs = 200
  q.duplicate_n = 200
  q.irrelevance_threshold = 0.3
  if size == "smoke":
    shrink(c)
  return c


def shrink(c):
  g = c.experiment.concepts
  g.num_concepts, g.oracle_per_concept = 20, 10
  g.pretrain_per_concept, g.heldout_per_concept = 3, 2
  c.experiment.token_budget = 20 * 8 * 128   # 20 steps: 10 evaluations, one every 2
  c.experiment.synthetic_tokens = 3_000
  c.experiment.ablation_synthetic_tokens = 1_000
  c.experiment.min_seed_nll_gap = -10.0  # a 6-step synthesizer barely uses d1: no gate here
  c.model.update(num_layers=2, d_model=64, d_ffn=192)
  c.train.seq_len = 128
  c.train.global_batch_size = 8
  c.train.eval_steps = 2
  c.synth_tune.global_batch_size = 4
  c.synth_tune.num_steps = 6
  c.synthesize.batch_size = 16
  c.synthesize.tokens_per_shard = 2048
  c.synthesize.max_new_tokens = 96
  c.pair.shard_size = 60
  c.quality.sample_docs = 40
  c.quality.duplicate_n = 40
