"""Tiny model pretrained on the shipped demo corpus through seqio, on CPU.

  launch/tpu_run.sh --config=configs/demo_corpus_train.py

Reads data/demo_corpus/train.jsonl.gz with its SentencePiece tokenizer
(vocab 4096), packs documents into 256-token rows, and reports held-out
perplexity on heldout.jsonl.gz every 50 steps (a few minutes on 2 cores).
Another corpus folder with the same three files: --config=configs/demo_corpus_train.py:DIR
"""

from configs.base import get_base

CORPUS = "data/demo_corpus"


def get_config(corpus: str | None = None):
  corpus = corpus or CORPUS
  c = get_base("tiny")
  c.model.vocab_size = 4096
  c.model.max_seq_len = 256
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.data = dict(
      kind="seqio",
      vocab=f"{corpus}/spm_bpe_4096.model",
      train=[dict(name="demo_real", format="text", files=f"{corpus}/train.jsonl.gz", weight=1.0)],
      eval=[dict(name="demo_heldout", format="text", files=f"{corpus}/heldout.jsonl.gz")],
      pack=True,
      shuffle_buffer=2000,
  )
  c.train.seq_len = 256
  c.train.global_batch_size = 16
  c.train.num_steps = 300      # ~1.2M tokens, about one pass over the corpus
  c.train.lr = 3e-3
  c.train.end_lr = 3e-5
  c.train.weight_decay = 0.01
  c.train.log_every = 25
  c.train.eval_every = 50
  c.train.eval_steps = 16      # covers the held-out split (the rest is zero-weight padding)
  c.train.checkpoint_every = 100
  c.train.peak_flops_per_device = 50e9  # rough CPU core figure, for the MFU estimate only
  return c
