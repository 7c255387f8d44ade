"""Tiny model, byte-level text, CPU: the smoke test for the trainer."""

from configs.base import get_base

_TEXT = (
    "Synthetic bootstrapped pretraining first learns how documents in a corpus relate, "
    "then writes new documents that share a topic with a seed document without copying it. "
    "A language model trained on the real corpus alone must repeat it once the unique data "
    "runs out; the synthesizer offers a different view of the same knowledge instead.\n"
)


def get_config():
  c = get_base("tiny")
  c.model.vocab_size = 256  # bytes
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.data = dict(kind="text_bytes", text=_TEXT * 40, path="", eval_fraction=0.1)
  c.train.seq_len = 128
  c.train.global_batch_size = 16
  c.train.num_steps = 200
  c.train.lr = 3e-3
  c.train.end_lr = 3e-5
  c.train.log_every = 20
  c.train.eval_every = 100
  c.train.eval_steps = 4
  c.train.checkpoint_every = 50
  c.train.peak_flops_per_device = 50e9  # rough CPU core figure, for the MFU estimate only
  return c
