"""Trainer: schedules, sharded steps, accumulation, learning, checkpoint resume."""

import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import tiny_train
from configs.model import presets
from sbp_jax.data import factory
from sbp_jax.model import ModelConfig, Transformer
from sbp_jax.parallel import global_batch, make_mesh, make_rules
from sbp_jax.train import loop
from sbp_jax.train.optim import decay_mask, make_optimizer, make_schedule
from sbp_jax.train.state import init_state
from sbp_jax.train.step import make_train_step


def test_cosine_schedule_paper_values():
  cfg = ml_collections.ConfigDict(dict(schedule="cosine", lr=1e-2, end_lr=5e-5, warmup_frac=0.05))
  s = make_schedule(cfg, 1000)
  assert float(s(0)) == 0.0
  assert float(s(25)) == pytest.approx(5e-3, rel=1e-5)  # linear warmup
  assert float(s(50)) == pytest.approx(1e-2, rel=1e-6)  # end of warmup: peak
  assert float(s(525)) == pytest.approx((1e-2 + 5e-5) / 2, rel=1e-4)  # cosine midpoint
  assert float(s(1000)) == pytest.approx(5e-5, rel=1e-6)


def test_constant_schedule():
  cfg = ml_collections.ConfigDict(dict(schedule="constant", lr=5e-6, end_lr=0.0, warmup_frac=0.0))
  s = make_schedule(cfg, 100)
  assert float(s(0)) == float(s(99)) == pytest.approx(5e-6)


def test_weight_decay_mask_skips_norms_and_biases():
  params = {"layers": {"attention": {"query": {"kernel": 1, "bias": 2}, "query_norm": {"scale": 3}},
                       "mlp_norm": {"scale": 4}}, "embedding": 5}
  m = decay_mask(params)
  assert m["layers"]["attention"]["query"] == {"kernel": True, "bias": False}
  assert not m["layers"]["attention"]["query_norm"]["scale"]
  assert not m["layers"]["mlp_norm"]["scale"] and m["embedding"]


def _setup(ici, devices=None, accum=1):
  config = tiny_train.get_config()
  mesh = make_mesh(ici, devices=devices)
  rules = make_rules()
  model = Transformer(ModelConfig.from_dict(config.model))
  sched = make_schedule(config.train, 100)
  tx = make_optimizer(config.train, sched)
  state = init_state(model, tx, mesh, rules, jax.random.key(0))
  step = make_train_step(model, tx, sched, mesh, rules, accum)
  it = factory.make_iterator(config.data, "train", 32, 16, seed=0)
  batches = [next(it) for _ in range(2)]
  return mesh, rules, state, step, batches


def _run(ici, devices=None, accum=1):
  mesh, rules, state, step, batches = _setup(ici, devices, accum)
  losses = []
  for b in batches:
    state, m = step(state, global_batch(b, mesh, rules))
    losses.append(float(m["loss"]))
  return losses, jax.device_get(state.params)


@pytest.fixture(scope="module")
def single_device_run():
  return _run((1, 1, 1), devices=jax.devices()[:1])


# The default suite keeps one mesh; the other two run with the slow tests.
@pytest.mark.parametrize("ici", [(8, 1, 1), pytest.param((2, 4, 1), marks=pytest.mark.slow),
                                 pytest.param((1, 4, 2), marks=pytest.mark.slow)])
def test_sharded_step_matches_single_device(ici, single_device_run):
  ref_losses, ref_params = single_device_run
  losses, params = _run(ici)
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_gradient_accumulation_equals_full_batch(single_device_run):
  ref_losses, ref_params = single_device_run
  losses, params = _run((1, 1, 1), devices=jax.devices()[:1], accum=4)
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def _config(num_steps, **train):
  c = tiny_train.get_config()
  c.train.num_steps = num_steps
  c.train.seq_len = 64
  c.train.global_batch_size = 8
  c.train.log_every = 1
  c.train.eval_every = 0
  c.train.checkpoint_every = 1000  # saves only at SIGTERM and at the end
  c.train.async_checkpoint = False
  c.mesh.ici = (4, 2, 1)
  for k, v in train.items():
    setattr(c.train, k, v)
  return c


@pytest.mark.slow  # a full training run
def test_loss_drops_on_repeated_text(tmp_path):
  c = _config(60, lr=3e-3, checkpoint_every=1000)
  c.train.eval_every = 60
  hist = loop.train(c, str(tmp_path))
  assert hist["loss"][1] > 4.0  # ~ln(256) at initialisation
  assert hist["loss"][60] < 1.6, hist["loss"][60]
  assert hist["eval"][60]["perplexity"] < 5.0


def _preempt_at(monkeypatch, index):
  """Makes the next train() receive SIGTERM while reading train batch index+1."""
  real = factory.make_iterator

  def make(data_cfg, split, *a, **kw):
    it = real(data_cfg, split, *a, **kw)
    return _SignalAt(it, index) if split == "train" else it
  monkeypatch.setattr(loop, "make_iterator", make)
  return lambda: monkeypatch.setattr(loop, "make_iterator", real)


class _SignalAt:
  def __init__(self, it, index):
    self._it, self._index = it, index

  def __iter__(self):
    return self

  def __next__(self):
    if self._it.index == self._index:
      os.kill(os.getpid(), signal.SIGTERM)
    return next(self._it)

  def get_state(self):
    return self._it.get_state()

  def set_state(self, s):
    self._it.set_state(s)


@pytest.mark.slow  # a full training run
def test_sigterm_then_resume_reproduces_uninterrupted_curve(tmp_path, monkeypatch):
  full = loop.train(_config(12), str(tmp_path / "full"))["loss"]
  undo = _preempt_at(monkeypatch, 6)
  part = loop.train(_config(12), str(tmp_path / "resumed"))["loss"]
  undo()
  assert sorted(part) == list(range(1, 8))  # stopped after the batch it was reading
  rest = loop.train(_config(12), str(tmp_path / "resumed"))["loss"]
  assert sorted(rest) == list(range(8, 13))
  for s in range(1, 13):
    got = part[s] if s <= 7 else rest[s]
    assert got == pytest.approx(full[s], rel=1e-6, abs=1e-7), s


@pytest.mark.slow  # a full training run
def test_restore_onto_a_different_mesh(tmp_path, monkeypatch):
  full = loop.train(_config(8), str(tmp_path / "full"))["loss"]
  undo = _preempt_at(monkeypatch, 3)
  loop.train(_config(8), str(tmp_path / "moved"))  # steps 1-4 on a (4, 2, 1) mesh
  undo()
  c = _config(8)
  c.mesh.ici = (1, 4, 2)  # steps 5-8 on an fsdp x tensor mesh
  rest = loop.train(c, str(tmp_path / "moved"))["loss"]
  assert sorted(rest) == [5, 6, 7, 8]
  for s in rest:
    assert rest[s] == pytest.approx(full[s], rel=1e-4), s


@pytest.mark.slow  # five `python -m sbp_jax.main` processes (~1-2 min on one core)
def test_kill9_at_random_moments_then_the_same_command_equals_an_uninterrupted_run(tmp_path):
  import json
  from tests import kill_resume
  args = ["--config.train.num_steps=60", "--config.train.global_batch_size=8",
          "--config.train.seq_len=32", "--config.train.checkpoint_every=5",
          "--config.train.log_every=1", "--config.train.eval_every=0"]
  whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
  steps = lambda w: [int(d) for d in os.listdir(os.path.join(w, "checkpoints"))
                     if d.isdigit()] if os.path.isdir(os.path.join(w, "checkpoints")) else []
  span = kill_resume.uninterrupted(kill_resume.main_cmd("tiny_train.py", whole, *args),
                                   lambda: len(steps(whole)))
  hits = kill_resume.killed_then_finished(
      kill_resume.main_cmd("tiny_train.py", cut, *args), lambda: max(steps(cut), default=0),
      span, seed=18, kills=3)
  # At least one kill lands while training; a later one may land after the last
  # checkpoint, while the job finishes (a crash there is fine too).
  assert any(s < 60 for _, s in hits), hits
  loss = lambda w: json.load(open(os.path.join(w, "history.json")))["loss"]
  assert loss(cut) == loss(whole)  # every step's loss, the re-run ones included
  assert max(steps(cut)) == 60
