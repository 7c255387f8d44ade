"""Fast resume: the tf.data iterator checkpointed with each model checkpoint
restores the exact stream without replaying; missing, corrupt or
uncheckpointable pipelines fall back to the (exact) skip; the trainer keeps
iterator checkpoints in step with its model checkpoints."""

import json
import logging
import os

import ml_collections
import numpy as np
import pytest

from sbp_jax.data import factory
from sbp_jax.data.in_memory import TokenWindowIterator
from sbp_jax.data.pipeline import DataExhausted, SeqioIterator, make_seqio_iterator
from sbp_jax.data.replay import ReplayIterator
from sbp_jax.data.sources import tf
from sbp_jax.train import loop
from tests.seqio_helpers import (  # noqa: F401
    _record_cache, data_config, make_docs, spm_path, write_jsonl)
from tests.test_data_e2e import _SigtermAt
from tests.test_data_e2e import _config as e2e_config

SEQ = 48


@pytest.fixture(scope="module")
def cfg(tmp_path_factory, spm_path):
  d = tmp_path_factory.mktemp("itckpt")
  real = make_docs(8, seed=10, lo=3, hi=10, tag="real")
  text = write_jsonl(d / "real.jsonl", [{"text": t} for t in real])
  pairs = write_jsonl(d / "pairs.jsonl", [{"d1": a, "d2": b} for a, b in zip(real, real[1:])])
  return data_config(spm_path, [dict(name="real", format="text", files=text, weight=0.7),
                                dict(name="pairs", format="pairs", files=pairs, weight=0.3)])


def _take(it, n):
  return [next(it) for _ in range(n)]


@pytest.fixture(scope="module")
def stream(cfg):
  """The uninterrupted stream's first batches (several epochs)."""
  return _take(make_seqio_iterator(cfg, "train", SEQ, 2, seed=5), 14)


def _same(want, got):
  assert len(want) == len(got)
  for a, b in zip(want, got):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


@pytest.fixture
def skips(monkeypatch):
  """Every n passed to tf.data's skip: a replay shows up as an n > 0."""
  seen, real = [], tf.data.Dataset.skip

  def skip(self, n, name=None):
    seen.append(int(n))
    return real(self, n, name=name)
  monkeypatch.setattr(tf.data.Dataset, "skip", skip)
  return seen


def _saved_at(cfg, n, prefix, resume_from=None, **kw):
  """An iterator advanced to batch n (optionally resumed by skip first), its
  iterator checkpoint at `prefix` and its JSON state, as the trainer saves them."""
  it = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5, **kw)
  if resume_from is not None:
    it.set_state({**it.get_state(), "batches": resume_from})
  _take(it, n - it.batches)
  assert it.save_iterator(prefix)
  return json.loads(json.dumps(it.get_state()))


@pytest.mark.parametrize("resume_from", [None, 3])  # saved by a run that itself resumed by skip
def test_restored_iterator_continues_exactly_without_replay(cfg, stream, tmp_path, skips,
                                                            resume_from):
  prefix = str(tmp_path / "it" / "host-0-of-1")
  state = _saved_at(cfg, 6, prefix, resume_from)
  assert state["batches"] == 6 and state["skip"] == (resume_from or 0)

  skips.clear()
  resumed = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5)
  resumed.set_state(state)
  assert resumed.restore_iterator(prefix)
  assert resumed.resumed_by == "iterator_checkpoint" and resumed.replayed == 0
  _same(stream[6:], _take(resumed, 8))
  # Restored into a pipeline built with the saved skip(n), whose state says it
  # is already done: no batch was read twice.
  assert skips == [state["skip"]] and resumed.batches == 14
  assert resumed.get_state() == {**state, "batches": 14}


def test_a_host_restores_its_own_shard(cfg):
  kw = dict(process_index=1, process_count=2)
  full = _take(make_seqio_iterator(cfg, "train", SEQ, 2, seed=5, **kw), 7)
  # Through TF's file systems, as gs:// is (ram:// needs no bucket).
  prefix = "ram://itckpt/checkpoints/4/data_iterator/host-1-of-2"
  state = _saved_at(cfg, 4, prefix, **kw)
  it = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5, **kw)
  it.set_state(state)
  assert it.restore_iterator(prefix)
  _same(full[4:], _take(it, 3))


def _corrupt(prefix):
  with open(prefix + ".index", "wb") as f:
    f.write(b"not an sstable")


def _truncate_data(prefix):
  data = prefix + ".data-00000-of-00001"
  with open(data, "rb+") as f:
    f.truncate(os.path.getsize(data) // 2)


@pytest.mark.parametrize("damage,reason", [
    (None, "has none"),
    (lambda p: os.remove(p + ".index"), "index is missing"),
    (_corrupt, "unreadable"),
    (_truncate_data, "unreadable"),
])
def test_missing_or_corrupt_checkpoint_falls_back_to_exact_skip(cfg, stream, tmp_path, caplog,
                                                                 skips, damage, reason):
  prefix = str(tmp_path / "host-0-of-1")
  state = _saved_at(cfg, 5, prefix)
  if damage:
    damage(prefix)
  skips.clear()
  it = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5)
  it.set_state(state)
  with caplog.at_level(logging.WARNING, "sbp_jax"):
    assert not it.restore_iterator(prefix if damage else None)
  assert reason in caplog.text and "skipping 5 batches instead" in caplog.text
  assert it.resumed_by == "skip" and it.replayed == 5
  _same(stream[5:9], _take(it, 4))
  assert skips[-1] == 5 and it.get_state()["skip"] == 5


def test_uncheckpointable_stage_is_named_and_resume_skips(cfg, tmp_path, caplog):
  # A Python stage (py_function) holds state tf.data cannot save: saving warns
  # once, naming it, and stops trying; the skip position still resumes exactly.
  inner = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5)

  def make():
    return inner._make().map(lambda b: {**b, "targets": tf.py_function(
        lambda t: t, [b["targets"]], tf.int32)})
  it = SeqioIterator(make, 2, SEQ, inner.fp, pad_at_end=False, checkpoint_iterator=True)
  next(it)
  with caplog.at_level(logging.WARNING, "sbp_jax"):
    assert not it.save_iterator(str(tmp_path / "host-0-of-1"))
  assert "cannot be checkpointed" in caplog.text and "PyFunc is stateful" in caplog.text
  assert not it.checkpoint_iterator and not os.path.exists(tmp_path / "host-0-of-1.index")


def test_a_failed_write_warns_and_keeps_trying(cfg, tmp_path, caplog):
  it = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5)
  next(it)
  (tmp_path / "file").write_text("not a directory")
  with caplog.at_level(logging.WARNING, "sbp_jax"):
    assert not it.save_iterator(str(tmp_path / "file" / "host-0-of-1"))
  assert "writing" in caplog.text and "failed" in caplog.text
  assert it.checkpoint_iterator and it.save_iterator(str(tmp_path / "ok" / "host-0-of-1"))


def test_an_exhausted_stream_stays_exhausted_after_restore(cfg, tmp_path):
  syn = ml_collections.ConfigDict(cfg.to_dict())
  syn.train = [{**dict(cfg.train[0]), "synthetic": True}]
  it = make_seqio_iterator(syn, "train", SEQ, 2, seed=5)
  with pytest.raises(DataExhausted):
    while True:
      next(it)
  prefix = str(tmp_path / "host-0-of-1")
  assert it.save_iterator(prefix)  # what the trainer saves before it stops
  again = make_seqio_iterator(syn, "train", SEQ, 2, seed=5)
  again.set_state(it.get_state())
  assert again.restore_iterator(prefix) and not again.exhausted
  with pytest.raises(DataExhausted):
    next(again)
  assert again.exhausted and again.batches == it.batches


def test_replay_mixture_checkpoints_its_seqio_child(cfg, tmp_path):
  def make():  # seqio main, in-memory replay corpus (no iterator checkpoint of its own)
    return ReplayIterator(make_seqio_iterator(cfg, "train", SEQ, 2, seed=5),
                          TokenWindowIterator(np.arange(500) % 97, SEQ, 2, seed=1), 0.3, seed=2)
  it = make()
  _take(it, 6)
  prefix = str(tmp_path / "host-0-of-1")
  assert it.checkpoint_iterator and it.save_iterator(prefix)
  state = json.loads(json.dumps(it.get_state()))
  again = make()
  again.set_state(state)
  assert again.restore_iterator(prefix) and again.main.resumed_by == "iterator_checkpoint"
  _same(_take(it, 5), _take(again, 5))


def test_off_by_config_and_for_eval(cfg):
  off = ml_collections.ConfigDict({**cfg.to_dict(), "checkpoint_iterator": False})
  it = make_seqio_iterator(off, "train", SEQ, 2, seed=5)
  assert not it.checkpoint_iterator and not it.save_iterator("/nonexistent/x")
  assert it.fp == make_seqio_iterator(cfg, "train", SEQ, 2, seed=5).fp  # same position
  assert not make_seqio_iterator(cfg, "eval", SEQ, 2, seed=5).checkpoint_iterator


# Trainer level ----------------------------------------------------------------

def _train_config(cfg, num_steps):
  c = e2e_config(cfg.vocab, list(cfg.train), num_steps)
  c.train.update(checkpoint_every=2, keep_checkpoints=2, async_checkpoint=True)
  return c


@pytest.mark.slow  # trains three runs end to end
def test_trainer_resumes_from_iterator_checkpoints_and_deletes_old_ones(cfg, tmp_path,
                                                                         monkeypatch):
  full = loop.train(_train_config(cfg, 7), str(tmp_path / "full"))["loss"]
  real, made = factory.make_iterator, []

  def tracked(kill_at):  # SIGTERM while train batch kill_at is read
    made.clear()

    def make(c, split, *a, **kw):
      it = real(c, split, *a, **kw)
      made.append(it)
      return _SigtermAt(it, kill_at) if split == "train" else it
    monkeypatch.setattr(loop, "make_iterator", make)
  tracked(kill_at=4)
  part = loop.train(_train_config(cfg, 7), str(tmp_path / "cut"))["loss"]  # SIGTERM at step 5
  assert sorted(part) == [1, 2, 3, 4, 5]
  ckpts = tmp_path / "cut" / "checkpoints"
  # Saved at 2, 4 and 5 (SIGTERM), 2 kept: step 2 went with its iterator checkpoint.
  assert sorted(os.listdir(ckpts)) == ["4", "5"]
  for step in ("4", "5"):
    assert (ckpts / step / "data_iterator" / "host-0-of-1.index").exists()

  tracked(kill_at=-1)
  rest = loop.train(_train_config(cfg, 7), str(tmp_path / "cut"))["loss"]
  assert sorted(rest) == [6, 7]
  it = made[0]  # the train iterator (eval_every=0: the only one)
  assert it.resumed_by == "iterator_checkpoint" and it.replayed == 0
  assert sorted(os.listdir(ckpts)) == ["6", "7"]
  for s in range(1, 8):
    got = part[s] if s <= 5 else rest[s]
    assert got == pytest.approx(full[s], rel=1e-6, abs=1e-6), s
