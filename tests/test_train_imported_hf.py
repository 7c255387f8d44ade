"""CPT (with replay) and s1 SFT of a tiny imported Llama on its own tokenizer.json (slow):
both train, checkpoint, resume exactly, and leave padding out of the loss."""

import json
import os
import signal

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from configs.base import get_base
from configs.sections.sft import sft_section
from sbp_jax.convert.safetensors_import import import_hf
from sbp_jax.data import factory, vocab as vocab_lib
from sbp_jax.data.hf_tokenizer import HFTokenizer
from sbp_jax.entigraph import cpt
from sbp_jax.reasoning import sft
from sbp_jax.train import loop
from tests import hf_fixtures as hx
from tests.seqio_helpers import _record_cache, make_docs, write_jsonl  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
  d = tmp_path_factory.mktemp("llama")
  src = hx.tiny_checkpoint(d / "hf", "llama", hx.llama3_tokenizer(d / "tok"), seed=1)
  import_hf(src, str(d / "import"), dtype="float32")
  return str(d / "import")


def _base(imp):
  c = get_base("tiny")
  with open(os.path.join(imp, "model.json")) as f:
    c.model = ml_collections.ConfigDict({**json.load(f), "dtype": "float32"})
  pad = HFTokenizer(os.path.join(imp, "tokenizer")).token_to_id("<|reserved_special_token_0|>")
  # The model has no pad token: pad with a reserved one. No tokenizer path: the import's.
  c.tokenizer = ml_collections.ConfigDict(dict(kind="", path="", pad_id=pad, mask_pad=False))
  c.train.update(init_from=os.path.join(imp, "checkpoints"), seq_len=32, global_batch_size=8,
                 lr=1e-3, warmup_frac=0.0, log_every=1, eval_every=0, checkpoint_every=2,
                 async_checkpoint=False)
  return c


def _cpt_config(imp, tmp_path):
  c = _base(imp)
  main = write_jsonl(tmp_path / "corpus.jsonl", [{"text": d + " !!"} for d in make_docs(30, 3)])
  rep = write_jsonl(tmp_path / "replay.jsonl", [{"text": d} for d in make_docs(30, 4, tag="r")])
  seqio = lambda name, f: dict(kind="seqio", pack=True, shuffle_buffer=16,
                               train=[dict(name=name, format="text", files=f)],
                               eval=[dict(name=name + "_eval", format="text", files=f)])
  c.job = "entigraph_cpt"
  c.data = ml_collections.ConfigDict(dict(kind="replay", rate=0.25, main=seqio("cpt", main),
                                          replay=seqio("cpt_replay", rep)))
  c.cpt = ml_collections.ConfigDict(dict(epochs=1.0))
  return c


def _sft_config(imp, tmp_path):
  c = _base(imp)
  recs = [dict(question=f"What is {i} + {i}?", reasoning=f"{i} and {i} make {2 * i}.",
               answer=str(2 * i)) for i in range(20)]
  c.job = "s1_sft"
  c.data = ml_collections.ConfigDict(dict(kind="seqio", train=[], eval=[], pack=False))
  c.sft = sft_section("chatml")
  src = tmp_path / "sft.jsonl"  # written once: the s1_sft run identity holds its mtime
  c.sft.train_file = str(src) if src.exists() else write_jsonl(src, recs)
  c.sft.epochs = 2
  c.train.seq_len = 128
  return c


class _SigtermAt:
  """Wraps the train iterator; sends SIGTERM while the `index`-th batch is read."""

  def __init__(self, it, index):
    self._it, self._index, self._n = it, index, 0

  def __getattr__(self, name):
    return getattr(self._it, name)

  def __next__(self):
    if self._n == self._index:
      os.kill(os.getpid(), signal.SIGTERM)
    self._n += 1
    return next(self._it)


def _full_cut_resume(run, config_fn, tmp_path, monkeypatch):
  full = run(config_fn(), str(tmp_path / "full"))
  real = factory.make_iterator
  monkeypatch.setattr(loop, "make_iterator", lambda cfg, split, *a, **kw: (
      _SigtermAt(real(cfg, split, *a, **kw), 2) if split == "train" else real(cfg, split, *a, **kw)))
  part = run(config_fn(), str(tmp_path / "cut"))["loss"]
  monkeypatch.setattr(loop, "make_iterator", real)
  resumed = run(config_fn(), str(tmp_path / "cut"))["loss"]
  steps = sorted(full["loss"])
  assert sorted(part) == [1, 2, 3] and sorted(resumed) == steps[3:]
  for s in steps:
    got = part[s] if s <= 3 else resumed[s]
    assert got == pytest.approx(full["loss"][s], rel=1e-6, abs=1e-6), s
  return full


def _first_batch_loss(config, imp):
  """Loss of the imported weights on the run's first batch, padding masked by position."""
  from sbp_jax.model import ModelConfig, Transformer
  from sbp_jax.train.checkpoint import Checkpointer
  from sbp_jax.train.step import weighted_nll
  c = vocab_lib.with_job_tokenizer(config)
  it = factory.make_iterator(c.data, "train", c.train.seq_len, c.train.global_batch_size, c.seed)
  b = next(it)
  pad = c.tokenizer.pad_id
  real = b["segment_ids"] > 0
  assert (~real).any() and np.all(b["targets"][~real] == pad) and np.all(b["weights"][~real] == 0)
  cfg = ModelConfig.from_dict(c.model)
  model = Transformer(cfg)
  abstract = jax.eval_shape(lambda: nn.meta.unbox(
      model.init(jax.random.key(0), np.zeros((1, 8), np.int32))["params"]))
  ck = Checkpointer(os.path.join(imp, "checkpoints"), every=1, keep=1, async_save=False)
  params = ck.restore_params(ck.latest_step(), abstract)
  ck.close()
  nll, w = weighted_nll(params, model, {k: np.asarray(v) for k, v in b.items()})
  return float(nll / w), b


def test_cpt_with_replay_on_an_imported_llama(llama, tmp_path, monkeypatch):
  config_fn = lambda: _cpt_config(llama, tmp_path)
  plan = cpt.plan(config_fn())
  tok = HFTokenizer(os.path.join(llama, "tokenizer"))
  docs = [json.loads(l)["text"] for l in open(tmp_path / "corpus.jsonl")]
  assert plan["corpus_tokens"] == sum(len(tok.encode(d)) + 1 for d in docs)  # its own ids
  assert plan["num_steps"] >= 5
  full = _full_cut_resume(cpt.run, config_fn, tmp_path, monkeypatch)
  # Step 1's loss is the imported weights' loss on batch 1 with padding masked by position.
  first, _ = _first_batch_loss(config_fn(), llama)
  assert full["loss"][1] == pytest.approx(first, rel=1e-5)


def test_s1_sft_on_an_imported_llama(llama, tmp_path, monkeypatch):
  config_fn = lambda: _sft_config(llama, tmp_path)
  full = _full_cut_resume(sft.run, config_fn, tmp_path, monkeypatch)
  assert len(full["loss"]) == sft.sft_steps(20, 2, 8) == 6
  c = sft.prepare(config_fn(), str(tmp_path / "prep"))
  first, b = _first_batch_loss(c, llama)
  assert full["loss"][1] == pytest.approx(first, rel=1e-5)
  tok = HFTokenizer(os.path.join(llama, "tokenizer"))
  assert tok.token_to_id("<|reserved_special_token_0|>") in b["targets"]  # rows are padded
  assert b["weights"].sum() < (b["segment_ids"] > 0).sum()  # prompts carry no loss
