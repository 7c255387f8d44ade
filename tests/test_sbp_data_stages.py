"""SBP training data through the seqio layer: synthesizer-tuning trains on d2 only,
and the joint mixture never repeats a synthetic document within the budget."""

import collections
import json
import random
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.base import get_base
from sbp_jax.data.factory import make_iterator
from sbp_jax.model import ModelConfig, Transformer
from sbp_jax.sbp import joint
from sbp_jax.sbp import synth_tune
from sbp_jax.train.step import weighted_nll

# The seqio data layer and the SentencePiece trainer (issue 3).
plan_mixture = pytest.importorskip("sbp_jax.data.mixture").plan_mixture
pytest.importorskip("sbp_jax.data.tokenizer")

WORDS = ("river stone light dark model data token learn train paper seed real cat sat mat dog "
         "ran hill north south east west quick brown fox jumps lazy over under").split()


def _text(rng, n):
  return " ".join(rng.choice(WORDS) for _ in range(n))


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
  from sbp_jax.data.tokenizer import train_sentencepiece
  rng = random.Random(0)
  texts = [_text(rng, 40) for _ in range(300)] + [f"real{i} syn{i}x" for i in range(300)]
  return train_sentencepiece(texts, str(tmp_path_factory.mktemp("spm") / "spm"), 320)


def _write(path, rows):
  with open(path, "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  return str(path)


def _base(spm_path, seq_len):
  c = get_base("tiny")
  c.model.vocab_size = 320
  c.model.dtype = "float32"
  c.model.remat_policy = "none"
  c.train.seq_len = seq_len
  c.data = ml_collections.ConfigDict(dict(kind="seqio", vocab=spm_path, train=[], eval=[],
                                          pack=True, shuffle_buffer=64))
  return c


def test_synthesizer_tuning_loss_ignores_d1_targets(spm_path, tmp_path):
  from sbp_jax.data.tokenizer import SentencePieceTokenizer
  tok = SentencePieceTokenizer(spm_path)
  rng = random.Random(1)
  pairs = [{"d1": _text(rng, 12), "d2": _text(rng, 8)} for _ in range(6)]
  files = _write(tmp_path / "pairs.jsonl", pairs)
  c = synth_tune.synthesizer_tuning_config(_base(spm_path, 128), "/base/checkpoints", files,
                                       num_steps=1, seq_len=128, global_batch_size=2)
  batch = next(make_iterator(c.data, "train", 128, 2, 0))
  w = batch["weights"]
  # The weighted targets of each packed segment are exactly d2 followed by EOS.
  d2s = {p["d2"] for p in pairs}
  seen = 0
  for r in range(2):
    for s in set(batch["segment_ids"][r]) - {0}:
      m = batch["segment_ids"][r] == s
      ids = batch["targets"][r][m & (w[r] > 0)].tolist()
      assert ids[-1] == 1 and tok.decode(ids[:-1]) in d2s
      seen += 1
  assert seen >= 2

  cfg = ModelConfig.from_dict(c.model)
  model = Transformer(cfg)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
  loss_grad = jax.jit(jax.value_and_grad(lambda p, b: weighted_nll(p, model, b)[0]))
  loss, grads = loss_grad(params, batch)
  # Scramble every target the loss should ignore (d1, the separator, padding).
  noise = np.random.default_rng(0).integers(3, 320, size=w.shape)
  changed = dict(batch, targets=np.where(w > 0, batch["targets"], noise).astype(np.int32))
  assert (changed["targets"] != batch["targets"]).sum() > 20
  loss2, grads2 = loss_grad(params, changed)
  assert float(loss2) == float(loss)
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), grads, grads2)))
  # d1 is context: changing the d1 *inputs* does change the loss.
  d1_inputs = (w == 0) & (batch["segment_ids"] > 0) & (batch["positions"] > 0)
  ctx = dict(batch, inputs=np.where(d1_inputs, noise, batch["inputs"]).astype(np.int32))
  assert float(loss_grad(params, ctx)[0]) != float(loss)


def test_joint_mixture_never_repeats_a_synthetic_document(spm_path, tmp_path):
  rng = random.Random(2)
  real = _write(tmp_path / "real.jsonl",
                [{"id": f"r{i}", "text": f"real{i} " + _text(rng, 10)} for i in range(8)])
  syn = _write(tmp_path / "synthetic-00000.jsonl",
               [{"id": f"s{i}", "text": f"syn{i}x " + _text(rng, 10)} for i in range(40)])
  from sbp_jax.data.tokenizer import SentencePieceTokenizer
  tok = SentencePieceTokenizer(spm_path)
  count = lambda path: sum(len(tok.encode(json.loads(l)["text"])) + 1 for l in open(path))
  seq, batch = 64, 4
  budget = 16 * seq * batch
  # The mixture plans to draw 90% of the synthetic tokens (the experiment's safety margin).
  plan = plan_mixture(budget, count(real), 0.9 * count(syn))
  steps = joint.pretraining_steps(budget, batch, seq)

  def draw(plan):
    """Counts of each document's marker over the run; the number of batches delivered."""
    c = joint.text_arm_config(_base(spm_path, seq), joint.joint_sources(real, syn, plan), steps)
    it = make_iterator(c.data, "train", seq, batch, 0)
    seen, n = collections.Counter(), 0
    try:
      for n in range(1, c.train.num_steps + 1):
        b = next(it)
        for r in range(batch):
          for s in set(b["segment_ids"][r]) - {0}:
            text = tok.decode(b["targets"][r][b["segment_ids"][r] == s].tolist())
            seen.update(re.findall(r"(?:syn\d+x|real\d+) ", text))
    except StopIteration:
      n -= 1
    return seen, n

  seen, n = draw(plan)
  assert n == steps  # the synthetic stream lasted the whole budget
  syn_counts = [n for k, n in seen.items() if k.startswith("syn")]
  real_counts = [n for k, n in seen.items() if k.startswith("real")]
  assert max(syn_counts) == 1                      # never repeated
  assert len(syn_counts) > 25                      # and really drawn, at about the planned share
  assert max(real_counts) > 2                      # while real documents repeat
  # Asking for more synthetic data than exists ends the run early instead of repeating it.
  seen, n = draw(plan_mixture(budget, count(real), 1.6 * count(syn)))
  assert n < steps and max(v for k, v in seen.items() if k.startswith("syn")) == 1
