"""Shared fixtures for the seqio data tests: a tiny SentencePiece model with our
special tokens and small JSONL corpora of distinguishable documents."""

import gzip
import json
import os
import random

import ml_collections
import pytest

WORDS = ("river stone light dark model data token learn train paper thesis seed synthetic real "
         "cat sat mat dog ran hill north south east west quick brown fox jumps lazy over under "
         "alpha beta gamma delta").split()


def make_docs(n: int, seed: int, lo: int = 5, hi: int = 60, tag: str = "") -> list[str]:
  rng = random.Random(seed)
  return [f"{tag}{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))
          for i in range(n)]


def write_jsonl(path, records) -> str:
  opener = gzip.open if str(path).endswith(".gz") else open
  with opener(path, "wt", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
  return str(path)


def train_spm(directory) -> str:
  """A 400-piece BPE model made by the project's trainer (special tokens as
  single pieces, pad 0, eos 1, unk 2, no bos, byte fallback)."""
  from sbp_jax.data.tokenizer import train_sentencepiece
  return train_sentencepiece(make_docs(400, 0) + [str(i) for i in range(1000)],
                             os.path.join(str(directory), "spm"), 400, hard_vocab_limit=False)


@pytest.fixture(scope="session", autouse=True)
def _record_cache(tmp_path_factory):
  """TFRecord mirrors of test files go to a temporary folder."""
  old = os.environ.get("SBP_DATA_CACHE")
  os.environ["SBP_DATA_CACHE"] = str(tmp_path_factory.mktemp("records"))
  yield
  if old is None:
    os.environ.pop("SBP_DATA_CACHE")
  else:
    os.environ["SBP_DATA_CACHE"] = old


@pytest.fixture(scope="session")
def spm_path(tmp_path_factory):
  return train_spm(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="session")
def vocab(spm_path):
  from sbp_jax.data.sources import seqio
  return seqio.SentencePieceVocabulary(spm_path)


def data_config(spm_path, train, eval_=None, **kw) -> ml_collections.ConfigDict:
  d = dict(kind="seqio", vocab=spm_path, train=train, eval=eval_ or train, pack=True,
           shuffle_buffer=64)
  d.update(kw)
  return ml_collections.ConfigDict(d)


def segments(batch):
  """[(row, segment tokens as a tuple, weights)] for every packed segment."""
  out = []
  for r in range(batch["targets"].shape[0]):
    seg = batch["segment_ids"][r]
    for s in sorted(set(seg.tolist()) - {0}):
      m = seg == s
      out.append((r, tuple(batch["targets"][r][m].tolist()), batch["weights"][r][m]))
  return out
