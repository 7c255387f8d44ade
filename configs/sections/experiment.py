"""Sections of the SBP compute-matched experiment (sbp_jax/sbp/experiment.py)."""

import ml_collections


def experiment_section() -> ml_collections.ConfigDict:
  e = ml_collections.ConfigDict()
  e.real_files = ""              # D_pretrain: JSON lines {"id", "text"}
  e.real_subset_docs = 0         # > 0: D_pretrain = a seeded sample of that many docs of
                                 # real_files, and the oracle gets all of real_files (demo)
  e.oracle_files = ""            # the oracle's unique data ("" = real_files)
  e.token_budget = 0             # tokens seen by every arm (sets train.num_steps)
  e.real_unique_tokens = 0       # ||D_pretrain||; 0 = count with the tokenizer
  e.synthetic_tokens = 0         # ||S_pretrain||, each synthetic token seen once
  e.synthesis_margin = 0.05      # synthesize this much extra so the mixture never runs dry
  e.arms = ("baseline", "sbp", "oracle")
  e.random_pair_ablation = True  # Table B.1: a synthesizer tuned on random pairs
  e.random_pairs = 0             # its training pairs (0 = as many as SBP's pairs)
  e.ablation_synthetic_tokens = 0  # what it synthesizes, for the similarity statistic only
  e.ablation_tune_steps = 0      # its synthesizer-tuning steps (0 = synth_tune.num_steps)
  e.eval_points = 10             # held-out evaluations over each arm's budget (Fig. 3.3)
  e.gate_pairs = 64              # pairs held out of synthesizer-tuning for the seed gate
  e.min_seed_nll_gap = 0.0       # stop before synthesis when the seed NLL gap is below this
  e.tokenizer_vocab_size = 0     # > 0: the data stage trains a BPE tokenizer of this size on
                                 # D_pretrain, and every stage uses it (not tokenizer.path;
                                 # pair.select.tokenizer, when set, keeps the shingle rule's own)
  return e


def synth_tune_section() -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.lr = 5e-6                    # constant (thesis B.1.1)
  s.warmup_frac = 0.0
  s.seq_len = 8192               # d1 and d2 of up to 4,096 tokens each
  s.global_batch_size = 2048     # x 8,192 = 16.8M tokens per step (thesis: 16M)
  s.num_steps = 1000             # not given in the thesis (longer tuning helped)
  s.grad_accum_steps = 0         # 0: as train.grad_accum_steps
  return s


def quality_section() -> ml_collections.ConfigDict:
  q = ml_collections.ConfigDict()
  q.sample_docs = 1000           # the thesis judges 1,000 samples per distribution
  q.duplicate_n = 1000           # Duplicate@N (thesis: N = 1M)
  q.irrelevance_threshold = 0.5  # seed-output cosine below this counts as irrelevant
  return q
