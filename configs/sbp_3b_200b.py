"""SBP at the thesis' 200B-scale (Table 3.2, first block): 3B model, 200B training
tokens, 10B unique real tokens, 75B synthetic tokens (37.5% of the budget; real
data seen 12.5 times). Oracle: 200B unique tokens. Baseline: the 10B repeated 20x.

  launch/tpu_run.sh --tpu=NAME --zone=Z --config=configs/sbp_3b_200b.py --workdir=gs://B/run \
    --config.experiment.real_files='gs://B/dclm/d_10b/*.jsonl.gz' \
    --config.experiment.oracle_files='gs://B/dclm/d_200b/*.jsonl.gz' \
    --config.tokenizer.path=gs://B/spm_bpe_49152.model \
    --config.pair.embedder.import_dir=gs://B/qwen3_embedding_0.6b

tokenizer.path is the one tokenizer setting (data, shingle rule, token counts, synthesis).
The pairing embedder is Qwen3-Embedding-0.6B, imported once with its own tokenizer:
  launch/tpu_run.sh --config=configs/import_hf.py --workdir=gs://B/qwen3_embedding_0.6b \
    --config.convert.source=<local copy of Qwen/Qwen3-Embedding-0.6B>
"""

from configs.base import TPU_ENV
from configs.sbp_common import get_sbp_config
from configs.sections.eval import eval_section, suite
from configs.sections.pair import pair_section

# Benchmarks as JSONL (sbp_jax/eval/convert.py turns each public release into its format;
# names as in configs/eval_demo.py) and OpenWebText2 held-out documents. Edit for your bucket.
EVAL_DIR = "gs://YOUR_BUCKET/sbp/eval"
# The import_hf output of Qwen3-Embedding-0.6B (model.json, checkpoints/, tokenizer/).
EMBEDDER_DIR = "gs://YOUR_BUCKET/sbp/qwen3_embedding_0.6b"


# Mesh and microbatching per v5p slice, from benchmarks/fit_table.py (AOT compile, per-chip
# HBM 95 GiB): FSDP over every chip; pretraining fits 8 sequences of 4,096 per chip per
# microbatch (3B: 36 GiB, 6B: 52 GiB on v5p-128); synthesizer-tuning at 8,192 fits 2 per chip
# (3B: 30 GiB on v5p-256; 4 per chip runs out of memory: the einsum attention scores).
# grad_accum = sequences per chip / sequences per microbatch.
RECOMMENDED = {  # chips: (pretrain grad_accum, synthesizer-tuning grad_accum)
    16: (16, 64), 32: (8, 32), 64: (4, 16), 128: (2, 8),
}


def recommended_parallelism(c, chips: int = 64):
  """Mesh (1, chips, 1) and the accumulation that fits, for a v5p slice of `chips` chips."""
  c.mesh.ici = (1, -1, 1)
  c.train.grad_accum_steps, c.synth_tune.grad_accum_steps = RECOMMENDED[chips]
  c.env = dict(TPU_ENV)
  return c


def scale(c, *, budget: float, unique: float, synthetic: float, chips: int = 64):
  recommended_parallelism(c, chips)
  e = c.experiment
  e.token_budget = int(budget)
  e.real_unique_tokens = int(unique)
  e.synthetic_tokens = int(synthetic)
  e.ablation_synthetic_tokens = 100_000_000  # enough for B.1 similarity statistics
  c.tokenizer.path = ""  # the 49,152-piece BPE model (set on the command line)
  # Pretraining (thesis 3.4.1): 2,048 x 4,096 tokens per step, cosine, 5% warmup to 1e-2,
  # decay to 5e-5.
  t = c.train
  t.seq_len = 4096
  t.global_batch_size = 2048
  t.schedule = "cosine"
  t.lr = 1e-2
  t.end_lr = 5e-5
  t.warmup_frac = 0.05
  t.num_steps = e.token_budget // (t.seq_len * t.global_batch_size)  # set again by the runner
  # Synthesizer-tuning (B.1.1): constant 5e-6, 16M tokens per step, context 8,192.
  c.synth_tune.lr = 5e-6
  c.synth_tune.seq_len = 8192
  c.synth_tune.global_batch_size = 2048
  # Synthesis (B.1.1): T = 1.0, top_p = 0.9, drop outputs with a repeated 13-token shingle.
  s = c.synthesize
  s.temperature = 1.0
  s.top_p = 0.9
  s.shingle = 13
  s.max_prompt_tokens = 4096
  s.max_new_tokens = 4096
  s.batch_size = 256
  s.tokens_per_shard = 50_000_000
  s.max_batches_per_shard = 100_000
  # Pairing (B.1.1, configs/sections/pair.py): Qwen3-Embedding-0.6B over whole documents
  # (last-token pooled), top-200 neighbours, similarity > 0.75, no cap per d1, 13-token
  # shingle near-duplicate rule in the job's tokenizer, sqrt(N) leaves, salted key shards.
  c.pair = pair_section()
  c.pair.embedder.import_dir = EMBEDDER_DIR
  c.eval = eval_section(suite(fixtures=EVAL_DIR, heldout=f"{EVAL_DIR}/openwebtext2.jsonl"))
  c.eval.prefix = "eos"
  c.quality.sample_docs = 1000
  c.quality.duplicate_n = 1_000_000
  return c


def get_config():
  c = get_sbp_config("3b")
  return scale(c, budget=200e9, unique=10e9, synthetic=75e9)
