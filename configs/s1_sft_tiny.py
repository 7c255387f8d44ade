"""s1 SFT on the tiny model (CPU): the B.4.5 recipe's shape at demo scale.

Same schedule shape as configs/s1_sft_qwen32b.py (epochs over the records,
5% warmup, cosine to 0, AdamW 0.9/0.95, weight decay 1e-4, no truncation, loss
on reasoning and answer only) with what a randomly initialised tiny model
needs to learn in minutes: a higher lr and a larger batch. The
plain template (our single-token delimiters). configs/s1_demo.py runs it on
generated arithmetic; on its own:
  launch/tpu_run.sh --config=configs/s1_sft_tiny.py --config.sft.train_file=train.jsonl \
    --config.tokenizer.path=spm.model
"""

import ml_collections

from configs.base import get_base
from configs.sections.sft import sft_section
from configs.sections.tokenizer import tokenizer_section


def get_config():
  c = get_base("tiny")
  c.job = "s1_sft"
  c.model.update(dict(vocab_size=320, max_seq_len=128))
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.tokenizer = tokenizer_section()  # the SentencePiece model (the demo sets it)
  c.data = ml_collections.ConfigDict(dict(kind="seqio", vocab="", train=[], eval=[], pack=False))
  c.sft = sft_section("plain")
  t = c.train
  t.seq_len = 128
  t.global_batch_size = 32
  t.num_steps = 0          # set from sft.epochs
  t.schedule = "cosine"
  t.lr = 3e-3
  t.end_lr = 0.0
  t.warmup_frac = 0.05
  t.b1, t.b2 = 0.9, 0.95
  t.weight_decay = 1e-4
  t.log_every = 50
  t.eval_every = 500
  t.eval_steps = 4
  t.checkpoint_every = 500
  t.peak_flops_per_device = 50e9
  return c
