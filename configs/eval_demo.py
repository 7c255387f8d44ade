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

FIXTURES = "tests/fixtures/eval"
HELDOUT = "data/demo_corpus/heldout.jsonl.gz"


def suite(fixtures: str = FIXTURES, heldout: str = "") -> list[dict]:
  """The thesis' nine benchmarks, one task per format's fixture, in Table 3.2's order."""
  f = lambda name: os.path.join(fixtures, name)
  return [
      dict(name="heldout", label="Held-out text", format="perplexity",
           files=heldout or f("heldout.jsonl")),
      dict(name="lambada", label="LAMBADA", format="lambada", files=f("lambada.jsonl")),
      dict(name="mmlu", label="Five-shot MMLU", format="mmlu", files=f("mmlu_test.jsonl"),
           fewshot_files=f("mmlu_dev.jsonl"), num_fewshot=5),
      dict(name="arc_challenge", label="ARC-Challenge (0-shot)", format="multiple_choice",
           files=f("arc_challenge.jsonl"), num_fewshot=0),
      dict(name="arc_easy", label="ARC-Easy (0-shot)", format="multiple_choice",
           files=f("arc_easy.jsonl"), num_fewshot=0),
      dict(name="sciq", label="SciQ (0-shot)", format="multiple_choice", files=f("sciq.jsonl"),
           num_fewshot=0),
      dict(name="winogrande", label="Winogrande (0-shot)", format="winogrande",
           files=f("winogrande.jsonl"), num_fewshot=0),
      dict(name="triviaqa", label="TriviaQA (1-shot)", format="generative_qa",
           files=f("triviaqa.jsonl"), num_fewshot=1, max_new_tokens=16),
      dict(name="webqs", label="WebQS (1-shot)", format="generative_qa", files=f("webqs.jsonl"),
           num_fewshot=1, max_new_tokens=16),
  ]


def eval_section(tasks: list[dict], checkpoint: str = "") -> ml_collections.ConfigDict:
  e = ml_collections.ConfigDict()
  e.checkpoint = checkpoint   # a run's checkpoints/ dir; "" = random weights (smoke tests only)
  e.model_json = ""           # e.g. <import workdir>/model.json for imported checkpoints
  e.batch_size = 16           # rows per scoring call (rounded up to the mesh's batch shards)
  e.max_len = 0               # longest scored input; 0 = model.max_seq_len
  e.min_bucket = 16           # shortest length bucket
  e.prefix = "none"           # "eos": put the end-of-sequence id before every text
  e.rolling_overlap = 0       # context tokens carried into each further window of long texts
  e.generate_batch_size = 8
  e.tasks = tasks             # each: name, format, files | tfds, [fewshot_files, num_fewshot,
  return e                    #   limit, seed, max_new_tokens, primary, label]


def get_config():
  c = get_base("tiny")
  c.job = "eval"
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.tokenizer = ml_collections.ConfigDict(dict(kind="bytes", path=""))
  heldout = HELDOUT if os.path.exists(HELDOUT) else ""
  c.eval = eval_section(suite(heldout=heldout), checkpoint="runs/tiny_demo/checkpoints")
  return c
