"""s1-32B SFT at the paper's settings (thesis B.4.5): Qwen2.5-32B-Instruct on s1K.

5 epochs, batch 16 (1,000 examples -> 315 steps), lr 1e-5 with 5% linear
warmup (16 steps) then cosine to 0, AdamW (0.9, 0.95), weight decay 1e-4,
bfloat16 compute, loss on reasoning and answer only, sequences long enough
that nothing is truncated (a longer record is an error), ChatML template
with <|im_start|>think / <|im_start|>answer.

Steps: import the base model (configs/import_hf.py -> IMPORT/checkpoints,
model.json, tokenizer/), select s1K (sbp_jax/reasoning/selection.py), then
  launch/tpu_run.sh --tpu=... --config=configs/s1_sft_qwen32b.py --workdir=gs://.../s1_32b \
    --config.sft.train_file=s1k.jsonl --config.train.init_from=IMPORT/checkpoints
The data is tokenized with the import's own tokenizer (IMPORT/tokenizer/tokenizer.json,
its eos <|im_end|> and pad <|endoftext|>); there is no second tokenizer setting.
"""

import ml_collections

from configs.base import get_base
from configs.sections.sft import sft_section
from configs.sections.tokenizer import tokenizer_section

# Qwen2.5-32B-Instruct (its config.json), in our field names.
QWEN25_32B = dict(vocab_size=152064, num_layers=64, d_model=5120, d_ffn=27648, num_heads=40,
                  num_kv_heads=8, head_dim=128, rope_theta=1e6, norm_eps=1e-6, qk_norm=False,
                  qkv_bias=True, tie_embeddings=False, max_seq_len=32768)


def get_config():
  c = get_base("3b")
  c.job = "s1_sft"
  c.model.update(QWEN25_32B)
  c.model.dtype = "bfloat16"
  c.mesh.ici = (1, -1, 1)  # fully sharded: 32B params + AdamW state do not fit replicated
  c.tokenizer = tokenizer_section()  # empty: the import's (train.init_from)
  c.data = ml_collections.ConfigDict(dict(kind="seqio", train=[], eval=[], pack=False))
  c.sft = sft_section("chatml")
  t = c.train
  t.seq_len = 32768        # "large enough to avoid truncating any samples"
  t.global_batch_size = 16
  t.num_steps = 315        # recomputed from sft.epochs and the record count
  t.schedule = "cosine"
  t.lr = 1e-5
  t.end_lr = 0.0
  t.warmup_frac = 0.05
  t.b1, t.b2 = 0.9, 0.95
  t.weight_decay = 1e-4
  t.clip_norm = 1.0
  t.checkpoint_every = 63  # about once per epoch
  t.eval_every = 0
  return c
