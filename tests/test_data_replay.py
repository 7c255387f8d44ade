"""Replay of a generic corpus during CPT: rate, resumption, factory kind, epoch planning."""

import ml_collections
import numpy as np
import pytest

from sbp_jax.data.factory import make_iterator
from sbp_jax.data.in_memory import TokenWindowIterator
from sbp_jax.data.replay import ReplayIterator
from sbp_jax.entigraph import cpt


def _pair(seed=0):
  main = TokenWindowIterator(np.arange(0, 100) % 50, seq_len=8, global_batch=2, seed=seed)
  replay = TokenWindowIterator(200 + np.arange(0, 100) % 50, seq_len=8, global_batch=2,
                               seed=seed + 1)
  return main, replay


def _is_replay(batch):
  return bool(batch["inputs"].min() >= 200)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_replay_rate_within_tolerance(rate):
  it = ReplayIterator(*_pair(), rate=rate, seed=3)
  n = 5000
  hits = sum(_is_replay(next(it)) for _ in range(n))
  sd = (rate * (1 - rate) / n) ** 0.5
  assert abs(hits / n - rate) < 4 * sd
  assert it.num_replay == hits
  # Only the drawn source advances: no batch of either corpus is skipped.
  assert it.main.index == n - hits and it.replay.index == hits


def test_coins_are_per_batch_and_not_periodic():
  it = ReplayIterator(*_pair(), rate=0.5, seed=0)
  seq = [_is_replay(next(it)) for _ in range(400)]
  runs = sum(a != b for a, b in zip(seq, seq[1:]))
  assert 150 < runs < 250  # independent fair coins switch about half the time
  other = ReplayIterator(*_pair(), rate=0.5, seed=1)
  assert seq != [_is_replay(next(other)) for _ in range(400)]


def test_resume_reproduces_the_stream():
  it = ReplayIterator(*_pair(), rate=0.2, seed=7)
  for _ in range(37):
    next(it)
  state = it.get_state()
  want = [next(it) for _ in range(25)]
  again = ReplayIterator(*_pair(), rate=0.2, seed=7)
  again.set_state(state)
  got = [next(again) for _ in range(25)]
  for a, b in zip(want, got):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  assert again.get_state() == it.get_state()


def test_factory_kind_and_errors():
  text = "the main corpus of the demo. " * 20
  cfg = ml_collections.ConfigDict(dict(
      kind="replay", rate=0.25,
      main=dict(kind="text_bytes", text=text, path="", eval_fraction=0.1),
      replay=dict(kind="text_bytes", text="ZZZZ generic replay text. " * 20, path="",
                  eval_fraction=0.1)))
  it = make_iterator(cfg, "train", 16, 4, seed=0)
  assert isinstance(it, ReplayIterator)
  batches = [next(it) for _ in range(200)]
  frac = np.mean([b"Z" in bytes(b["inputs"].astype(np.uint8).ravel()) or
                  b"gener" in bytes(b["inputs"].astype(np.uint8).ravel()) for b in batches])
  assert 0.15 < frac < 0.35
  ev = make_iterator(cfg, "eval", 16, 4, seed=0)
  assert isinstance(ev, TokenWindowIterator)  # held-out loss on the target corpus only
  with pytest.raises(ValueError, match="data.rate=1.0"):
    ReplayIterator(*_pair(), rate=1.0)
  del cfg.replay
  with pytest.raises(ValueError, match="needs data.replay"):
    make_iterator(cfg, "train", 16, 4, seed=0)


def test_epoch_planning(tmp_path):
  assert cpt.steps_for_epochs(10_000, 2, 100, 10, 0.0) == 20
  assert cpt.steps_for_epochs(10_000, 2, 100, 10, 0.1) == 23  # ceil(20 / 0.9)
  assert cpt.steps_for_epochs(10, 1, 100, 10) == 1
  p = tmp_path / "corpus.txt"
  p.write_bytes(b"x" * 1000)
  data = ml_collections.ConfigDict(dict(kind="replay", rate=0.5, main=dict(
      kind="text_bytes", path=str(p), text="", eval_fraction=0.1), replay=dict(kind="text_bytes")))
  assert cpt.corpus_tokens(data) == 900
  c = ml_collections.ConfigDict(dict(data=data, cpt=dict(epochs=3.0, corpus_tokens=0),
                                     train=dict(seq_len=10, global_batch_size=9)))
  assert cpt.plan(c) == dict(corpus_tokens=900, epochs=3.0, replay_rate=0.5, num_steps=60)


def test_seqio_corpus_tokens_with_sentencepiece(tmp_path):
  import json
  import sentencepiece as spm
  vocab = "data/demo_corpus/spm_bpe_4096.model"  # the shipped tokenizer (task corpus)
  texts = [f"The keeper of light number {i} wrote in the log every night." for i in range(5)]
  f = tmp_path / "c.jsonl"
  f.write_text("".join(json.dumps({"text": t, "doc_id": "x"}) + "\n" for t in texts))
  sp = spm.SentencePieceProcessor(model_file=vocab)
  want = sum(len(sp.encode(t)) + 1 for t in texts)  # + one end-of-document token each
  data = ml_collections.ConfigDict(dict(kind="seqio", vocab=vocab, train=[
      dict(name="eg", format="text", files=str(f), weight=1.0)]))
  assert cpt.corpus_tokens(data) == want
  f.write_text('{"txt": "oops"}\n')
  with pytest.raises(ValueError, match=r"c\.jsonl:1: .*'text'"):
    cpt.corpus_tokens(data)
