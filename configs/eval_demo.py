"""Evaluate a checkpoint on every eval format (the hand-written fixtures) and on
the demo corpus' held-out split (the fixture held-out file until it exists).

The tiny byte-level demo checkpoint, then its evaluation:
  launch/tpu_run.sh --config=configs/tiny_train.py --config.model.vocab_size=512 \
      --config.train.num_steps=100 --workdir=runs/tiny_demo
  launch/tpu_run.sh --config=configs/eval_demo.py --workdir=runs/eval_demo
(vocab_size=512 holds the byte tokenizer's special ids, which generation pads
with.) For a SentencePiece model set tokenizer.kind/path, eval.prefix="eos",
and the model section (or eval.model_json) to the checkpoint's.

A task reads TFDS instead of files when it has no `files` but a `tfds` entry:
  dict(name="arc_easy", format="multiple_choice",
       tfds=dict(name="ai2_arc/ARC-Easy", split="test", fewshot_split="train",
                 data_dir="gs://bucket/tfds", download=False))
(TFDS serves ai2_arc, winogrande, lambada and trivia_qa; see sbp_jax/eval/tfds_source.py.)
"""

import os

import ml_collections

from configs.base import get_base
from configs.sections.eval import eval_section, suite

HELDOUT = "data/demo_corpus/heldout.jsonl.gz"


def get_config():
  c = get_base("tiny")
  c.job = "eval"
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))
  heldout = HELDOUT if os.path.exists(HELDOUT) else ""
  c.eval = eval_section(suite(heldout=heldout), checkpoint="runs/tiny_demo/checkpoints")
  return c
