"""Job `s1_sft`: render reasoning records, then fine-tune with the one train loop.

config.sft.train_file (and optional eval_file) hold {question, reasoning,
answer} JSON lines; they are rendered with config.sft.template into
workdir/data/sft_{train,eval}.jsonl (prompt/response records, loss on the
response only), every record checked against train.seq_len with the job's
tokenizer (sbp_jax/data/vocab.py: tokenizer.path, or an import's own). The data
section then reads those files as seqio `prompt_response` tasks without packing
(a batch is `global_batch_size` examples, as in the thesis) and train.num_steps
is set from sft.epochs as the thesis counts them: every epoch ends with a step,
partial batch included, so steps = ceil(epochs * ceil(records / batch)) (1,000
records, 5 epochs, batch 16 -> 5 x 63 = 315 steps, thesis B.4.5). The stream
repeats the records, so the last batch of an epoch is filled from the next.
"""

from __future__ import annotations

import logging
import math
import os

import ml_collections

from sbp_jax import fileio, runs, validate
from sbp_jax.data import vocab as vocab_lib
from sbp_jax.parallel import make_rules, mesh_from_config
from sbp_jax.reasoning.sft_data import render_records, template_from_config

log = logging.getLogger(__name__)


def sft_steps(records: int, epochs: float, batch: int) -> int:
  """Steps of `epochs` passes, each pass ending with its partial batch (see the docstring)."""
  return math.ceil(epochs * math.ceil(records / batch))


def prepare(config, workdir: str) -> ml_collections.ConfigDict:
  """Renders the SFT files and returns the training config that reads them."""
  s = config.sft
  tok = vocab_lib.make_tokenizer(vocab_lib.job_tokenizer(config))
  t = template_from_config(s.template)
  c = ml_collections.ConfigDict(config.to_dict())  # unlocked copy: paths depend on workdir
  stats, rendered = {}, {}
  for split in ("train", "eval"):
    src = s.get(f"{split}_file", "")
    if not src:
      continue
    dst = os.path.join(workdir, "data", f"sft_{split}.jsonl")
    rendered[dst], stats[split] = render_records(src, t, tok, config.train.seq_len)
    c.data[split] = [dict(name=f"{s.task_name}_{split}", format="prompt_response", files=dst,
                          **({"weight": 1.0} if split == "train" else {}))]
  if "train" not in stats:
    raise ValueError("sft.train_file is empty; point it at JSON lines with question / reasoning / "
                     "answer fields.")
  if "eval" not in stats:
    c.data.eval = []
    c.train.eval_every = 0
  c.data.kind = "seqio"
  c.data.pack = False
  if s.epochs:
    c.train.num_steps = sft_steps(stats["train"]["records"], s.epochs,
                                  config.train.global_batch_size)
  if c.train.num_steps <= 0:
    raise ValueError("SFT has no steps: set sft.epochs (or train.num_steps) to a positive number.")
  log.info("SFT: %d records x %s epochs / batch %d -> %d steps (longest %d of %d tokens)",
           stats["train"]["records"], s.epochs, config.train.global_batch_size,
           c.train.num_steps, stats["train"]["max_tokens"], config.train.seq_len)
  validate.train_config(c, mesh_from_config(c.mesh), make_rules(c.mesh.get("rules")))
  from sbp_jax.train.loop import OUTPUTS as TRAIN_OUTPUTS  # pylint: disable=g-import-not-at-top
  # The rendered files live in the workdir, where the train run's identity does not look
  # for inputs: this identity covers the sft section and its source files, and is claimed
  # before anything is written (--overwrite clears the training outputs too).
  runs.claim(workdir, "s1_sft", config, ("sft",), ("data",) + TRAIN_OUTPUTS, write_config=False)
  for dst, rows in rendered.items():
    if not fileio.exists(dst):  # the same identity: the same records
      fileio.write_jsonl(dst, rows)
  return c


def run(config, workdir: str) -> dict:
  from sbp_jax.train.loop import train  # pylint: disable=g-import-not-at-top
  return train(prepare(config, workdir), workdir)
