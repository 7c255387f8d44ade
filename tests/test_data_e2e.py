"""End to end through the trainer (slow): exact resume from a checkpoint, a
graceful stop when synthetic data runs out, and the demo corpus run."""

import math
import os
import signal

import jax
import pytest

from configs import demo_corpus_train
from configs.base import get_base
from sbp_jax.data import factory
from sbp_jax.model import ModelConfig, Transformer
from sbp_jax.parallel import make_rules, mesh_from_config
from sbp_jax.train import loop
from sbp_jax.train.optim import make_optimizer, make_schedule
from sbp_jax.train.state import init_state
from sbp_jax.train.step import make_eval_step
from tests.seqio_helpers import _record_cache, make_docs, spm_path, write_jsonl  # noqa: F401

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(spm_path, train, num_steps):
  c = get_base("tiny")
  c.model.vocab_size = 512
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.data = dict(kind="seqio", vocab=spm_path, train=train, eval=train[:1], pack=True,
                shuffle_buffer=64)
  c.train.update(seq_len=32, global_batch_size=8, num_steps=num_steps, lr=3e-3, log_every=1,
                 eval_every=0, checkpoint_every=3, async_checkpoint=False)
  return c


class _SigtermAt:
  """Wraps the train iterator; sends SIGTERM while batch `index` is read."""

  def __init__(self, it, index):
    self._it, self._index = it, index

  def __getattr__(self, name):
    return getattr(self._it, name)

  def __next__(self):
    if self._it.batches == self._index:
      os.kill(os.getpid(), signal.SIGTERM)
    return next(self._it)


def test_trainer_resume_replays_the_same_batches(tmp_path, spm_path, monkeypatch):
  f = write_jsonl(tmp_path / "t.jsonl", [{"text": d} for d in make_docs(50, seed=7)])
  p = write_jsonl(tmp_path / "p.jsonl", [{"d1": a, "d2": b} for a, b in
                                        zip(make_docs(20, 8), make_docs(20, 9))])
  train = [dict(name="t", format="text", files=f, weight=0.8),
           dict(name="p", format="pairs", files=p, weight=0.2)]
  full = loop.train(_config(spm_path, train, 6), str(tmp_path / "full"))["loss"]
  real = factory.make_iterator
  monkeypatch.setattr(loop, "make_iterator", lambda cfg, split, *a, **kw: (
      _SigtermAt(real(cfg, split, *a, **kw), 2) if split == "train" else real(cfg, split, *a, **kw)))
  part = loop.train(_config(spm_path, train, 6), str(tmp_path / "cut"))["loss"]  # preempted
  monkeypatch.setattr(loop, "make_iterator", real)
  assert sorted(part) == [1, 2, 3]
  resumed = loop.train(_config(spm_path, train, 6), str(tmp_path / "cut"))["loss"]
  assert sorted(resumed) == [4, 5, 6]
  for s in range(1, 7):
    got = part[s] if s <= 3 else resumed[s]
    assert got == pytest.approx(full[s], rel=1e-6, abs=1e-6), s


def test_trainer_stops_when_synthetic_data_runs_out(tmp_path, spm_path):
  f = write_jsonl(tmp_path / "r.jsonl", [{"text": d} for d in make_docs(20, seed=1)])
  s = write_jsonl(tmp_path / "s.jsonl", [{"text": d} for d in make_docs(12, seed=2, hi=15)])
  train = [dict(name="r", format="text", files=f, weight=0.5),
           dict(name="s", format="text", files=s, weight=0.5, synthetic=True)]
  out = loop.train(_config(spm_path, train, 1000), str(tmp_path / "run"))
  last = max(out["loss"])
  assert 1 <= last < 1000
  from sbp_jax.train.checkpoint import Checkpointer
  assert Checkpointer(str(tmp_path / "run" / "checkpoints"), 1, 1, False).latest_step() == last


def test_demo_corpus_training_lowers_heldout_perplexity(tmp_path, monkeypatch):
  corpus = os.path.join(ROOT, "data", "demo_corpus")
  if not os.path.exists(os.path.join(corpus, "train.jsonl.gz")):
    pytest.skip("data/demo_corpus is not in this checkout")
  monkeypatch.chdir(ROOT)
  c = demo_corpus_train.get_config()
  c.train.num_steps, c.train.eval_every, c.train.async_checkpoint = 120, 60, False

  mesh, rules = mesh_from_config(c.mesh), make_rules(c.mesh.get("rules"))
  model = Transformer(ModelConfig.from_dict(c.model))
  tx = make_optimizer(c.train, make_schedule(c.train, c.train.num_steps))
  params = init_state(model, tx, mesh, rules, jax.random.key(c.seed)).params
  before = loop.evaluate(make_eval_step(model, mesh, rules), params,
                         loop.eval_batches(c.data, c.train, c.seed), mesh, rules)["perplexity"]
  evals = loop.train(c, str(tmp_path / "run"))["eval"]
  ppl = [evals[s]["perplexity"] for s in sorted(evals)]
  print(f"held-out perplexity: init {before:.1f} -> " +
        " -> ".join(f"step {s}: {evals[s]['perplexity']:.1f}" for s in sorted(evals)))
  assert before > 0.5 * c.model.vocab_size  # an untrained model is near uniform
  assert ppl == sorted(ppl, reverse=True) and ppl[-1] < before / 4
  assert not math.isnan(ppl[-1])
  assert factory.make_iterator(c.data, "eval", c.train.seq_len, 16, 0).fp  # seqio path used
