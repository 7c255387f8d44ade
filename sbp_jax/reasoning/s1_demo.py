"""Job `s1_demo`: the s1 recipe end to end on CPU with exact arithmetic traces.

  1. workdir/data/{train,test}.jsonl: arithmetic questions with exact traces
     (arith_data, deterministic in s1_data.seed);
  2. workdir/data/spm.model: a small SentencePiece model trained on the train
     split (digits split, our special tokens reserved);
  3. workdir/sft: SFT of the tiny model (job s1_sft: loss only on reasoning
     and answer);
  4. workdir/budget_eval: sequential (budget forcing) and parallel (majority
     vote) scaling on the test split, tables printed and plotted.
Each stage skips work already on disk, so a re-run resumes.
"""

from __future__ import annotations

import logging
import os

import ml_collections

from sbp_jax import fileio
from sbp_jax.reasoning import arith_data, bf_eval, sft, sft_data

log = logging.getLogger(__name__)


def train_tokenizer(train_path: str, template, prefix: str, vocab_size: int) -> str:
  path = prefix + ".model"
  if not fileio.exists(path):
    from sbp_jax.data.tokenizer import train_small_corpus_sentencepiece  # pylint: disable=g-import-not-at-top
    recs = sft_data.read_records(train_path)
    train_small_corpus_sentencepiece(arith_data.tokenizer_texts(recs, template), prefix,
                                     vocab_size)
  return path


def run(config, workdir: str) -> dict:
  d = config.s1_data
  data_dir = os.path.join(workdir, "data")
  paths = arith_data.write_splits(data_dir, d.n_train, d.n_test, d.seed, d.min_ops, d.max_ops,
                                 d.p_recheck)
  vocab = train_tokenizer(paths["train"], sft_data.template_from_config(config.sft.template),
                          os.path.join(data_dir, "spm"), d.vocab_size)

  c = ml_collections.ConfigDict(config.to_dict())
  c.data.vocab = vocab
  c.sft.train_file = paths["train"]
  c.sft.eval_file = paths["test"]
  sft_dir = os.path.join(workdir, "sft")
  history = sft.run(c, sft_dir)
  losses = history["loss"]
  if losses:
    last = max(losses)
    log.info("SFT finished: step %d loss %.4f", last, losses[last])

  c.generate.checkpoint = os.path.join(sft_dir, "checkpoints")
  c.tokenizer = ml_collections.ConfigDict(dict(kind="sentencepiece", path=vocab))
  c.budget_eval.questions = paths["test"]
  c.budget_eval.template = c.sft.template  # decode with the delimiters the model was trained on
  return bf_eval.run(c, workdir)
