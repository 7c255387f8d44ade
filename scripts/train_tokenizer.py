"""Trains the SentencePiece BPE tokenizer sbp_jax models use.

  .venv/bin/python scripts/train_tokenizer.py --input data/demo_corpus/train.jsonl.gz \
      --vocab_size 4096 --output data/demo_corpus/spm_bpe_4096

Inputs are JSON-lines files (.jsonl or .jsonl.gz) whose `--field` (default
"text") holds a document. Writes <output>.model and <output>.vocab with the
special tokens of sbp_jax/data/special_tokens.py reserved, byte fallback,
pad=0 eos=1 unk=2 and no bos; the paper's runs use --vocab_size 49152.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sbp_jax import fileio  # pylint: disable=g-import-not-at-top
from sbp_jax.data import tokenizer


def texts(paths, field):
  for p in paths:
    for rec in fileio.read_jsonl(p, fields=(field,)):
      yield rec[field]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--input", nargs="+", required=True, help="JSON-lines files (.jsonl/.jsonl.gz)")
  ap.add_argument("--field", default="text")
  ap.add_argument("--vocab_size", type=int, required=True)
  ap.add_argument("--output", required=True, help="output prefix; writes <prefix>.model")
  ap.add_argument("--character_coverage", type=float, default=0.9995)
  ap.add_argument("--input_sentence_size", type=int, default=2_000_000,
                  help="at most this many (sampled) training sentences")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)
  path = tokenizer.train_sentencepiece(
      texts(args.input, args.field), args.output, args.vocab_size,
      character_coverage=args.character_coverage,
      input_sentence_size=args.input_sentence_size, seed=args.seed)
  vocab = tokenizer.load_vocabulary(path)  # checks the special tokens
  print(f"wrote {path} (vocab {vocab.vocab_size})")
  return path


if __name__ == "__main__":
  main()
