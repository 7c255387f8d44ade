"""The README's main command: the whole SBP experiment on the shipped demo corpus, on CPU.

  launch/tpu_run.sh --config=configs/demo_realtext_cpu.py

D_pretrain is a seeded sample of 300 of the 2,377 training documents (Python
documentation sections); the oracle trains on the whole training split; every
arm sees the same token budget. SBP pairs D_pretrain with MiniLM + ScaNN,
tunes a synthesizer from the baseline checkpoint, synthesizes S_pretrain and
trains on the mixture. Prints the Table 3.2-style comparison (held-out
perplexity on the held-out split, plus the eval fixtures), the Table 3.3-style quality report and the
Table B.1 random-pair ablation. Differences from the paper forced by the scale
are marked below; at this size SBP need not beat the baseline.
"""

from configs.sbp_common import get_sbp_config
from configs.sbp_pair_demo import demo_pair_section
from configs.sections.eval import eval_section, suite

CORPUS = "data/demo_corpus"


def get_config(size: str = "demo"):
  """size: "demo" (the README command) or "smoke" (the end-to-end test: minutes on CPU)."""
  if size not in ("demo", "smoke"):
    raise ValueError(f"configs/demo_realtext_cpu.py:{size}: choose 'demo' or 'smoke'.")
  c = get_sbp_config("tiny")
  c.model.vocab_size = 4096
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.model.max_seq_len = 1024
  c.mesh.ici = (1, 1, 1)  # one device: the CPU's cores go to XLA's intra-op threads
  c.tokenizer.path = f"{CORPUS}/spm_bpe_4096.model"  # data, shingles, counts and sampling
  c.data.eval = [dict(name="demo_heldout", format="text", files=f"{CORPUS}/heldout.jsonl.gz")]

  e = c.experiment
  e.real_files = f"{CORPUS}/train.jsonl.gz"
  e.real_subset_docs = 300         # ~190K tokens of unique real data
  e.oracle_files = ""              # = real_files: the oracle draws from all 2,377 documents
  e.token_budget = 80 * 16 * 512   # 655K tokens: the baseline sees D_pretrain ~3.5 times
  e.synthetic_tokens = 245_760     # 37.5% of the budget, as at the 200B-scale
  e.ablation_synthetic_tokens = 24_000

  t = c.train
  t.seq_len = 512
  t.global_batch_size = 16
  t.lr = 3e-3                      # paper: 1e-2 at 3B with 8M-token batches
  t.end_lr = 3e-5
  t.warmup_frac = 0.05
  t.log_every = 20
  t.eval_steps = 8                 # 8 x 16 x 512 tokens cover the 54K-token held-out split
  t.checkpoint_every = 1000
  t.peak_flops_per_device = 50e9

  st = c.synth_tune
  st.seq_len = 1024                # d1 (cut to fit) + d2
  st.global_batch_size = 8
  st.num_steps = 40
  st.lr = 1e-3                     # paper: 5e-6 for a 3B model; a tiny model needs far more
  st.warmup_frac = 0.0

  s = c.synthesize
  s.max_prompt_tokens = 384
  s.max_new_tokens = 384
  s.batch_size = 16                 # on CPU, smaller decode batches give more tokens/s (benchmarks/synthesis.py)
  s.tokens_per_shard = 32_768
  s.max_batches_per_shard = 50
  s.ici = (1, 1, 1)

  c.pair = demo_pair_section()
  c.pair.shard_size = 100

  # Table 3.2's suite: held-out perplexity on the demo corpus' held-out split, and the eval
  # harness' hand-written fixtures (a handful of items per benchmark: they show the table's
  # layout, their accuracies are noise).
  c.eval = eval_section(suite(heldout=f"{CORPUS}/heldout.jsonl.gz"))
  c.eval.prefix = "0"  # training feeds id 0 before each packed segment's first token

  q = c.quality
  q.sample_docs = 200
  q.duplicate_n = 200
  q.irrelevance_threshold = 0.3    # MiniLM: unrelated documentation sections score ~0.1-0.3
  if size == "smoke":
    shrink(c)
  return c


def shrink(c):
  """The smallest run that still exercises every stage (about 50 train steps in all)."""
  c.experiment.real_subset_docs = 60
  c.experiment.token_budget = 12 * 8 * 256
  c.experiment.synthetic_tokens = 9_000
  c.experiment.ablation_synthetic_tokens = 2_000
  c.train.seq_len = 256
  c.train.global_batch_size = 8
  c.train.eval_steps = 2
  c.synth_tune.seq_len = 512
  c.synth_tune.global_batch_size = 4
  c.synth_tune.num_steps = 8
  c.synthesize.max_prompt_tokens = 192
  c.synthesize.max_new_tokens = 128
  c.synthesize.batch_size = 32
  c.synthesize.tokens_per_shard = 4096
  c.pair.shard_size = 30
  c.pair.search.k = 10
  c.quality.sample_docs = 40
  c.quality.duplicate_n = 40
