"""The `eval` section (sbp_jax/eval/jobs.py) and the thesis's benchmark suite."""

import os

import ml_collections

FIXTURES = "tests/fixtures/eval"


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
