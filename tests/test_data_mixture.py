"""Mixtures: the token-budget plan, synthetic data never repeated, exact
resume, and disjoint covering host shards."""

import collections
import json

import ml_collections
import numpy as np
import pytest

from sbp_jax.data import factory
from sbp_jax.data.mixture import example_rates, plan_mixture
from sbp_jax.data.pipeline import DataExhausted, make_seqio_iterator
from tests.seqio_helpers import (  # noqa: F401
    _record_cache, data_config, make_docs, segments, spm_path, vocab, write_jsonl)

SEQ = 48


@pytest.mark.parametrize("budget,real,synth,real_epochs,synth_rate", [
    (200e9, 10e9, 75e9, 12.5, 0.375),    # 200B-scale
    (1e12, 50e9, 125e9, 17.5, 0.125),    # 3B at 1T-scale
    (1e12, 50e9, 250e9, 15.0, 0.25),     # 6B at 1T-scale
    (200e9, 10e9, 0.0, 20.0, 0.0),       # baseline: the unique data 20 times
])
def test_plan_reproduces_paper_numbers(budget, real, synth, real_epochs, synth_rate):
  p = plan_mixture(budget, real, synth)
  assert p.real_epochs == pytest.approx(real_epochs)
  assert p.synthetic_epochs == (1.0 if synth else 0.0)
  assert p.synthetic_rate == pytest.approx(synth_rate)
  assert p.real_rate + p.synthetic_rate == pytest.approx(1.0)
  assert p.real_tokens + p.synthetic_tokens == pytest.approx(budget)


def test_plan_rejects_more_synthetic_than_budget():
  with pytest.raises(ValueError, match="never repeated"):
    plan_mixture(100e9, 10e9, 150e9)


def test_example_rates_turn_token_shares_into_example_rates():
  r = example_rates({"real": 0.5, "syn": 0.5}, {"real": 100.0, "syn": 50.0})
  assert r == pytest.approx({"real": 1 / 3, "syn": 2 / 3})


def _doc_tag(vocab, toks) -> str:
  return vocab.decode([t for t in toks if t != 1]).split()[0]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, spm_path):
  d = tmp_path_factory.mktemp("mix")
  real = make_docs(6, seed=10, lo=3, hi=10, tag="real")
  syn = make_docs(30, seed=11, lo=3, hi=10, tag="syn")
  return dict(real=write_jsonl(d / "real.jsonl", [{"text": t} for t in real]),
              syn=write_jsonl(d / "syn.jsonl.gz", [{"text": t} for t in syn]),
              pairs=write_jsonl(d / "pairs.jsonl", [{"d1": a, "d2": b}
                                                    for a, b in zip(real, real[1:])]),
              shards=[write_jsonl(d / f"s{i}.jsonl", [{"text": t} for t in syn[i::3]])
                      for i in range(3)],
              n_real=len(real), n_syn=len(syn))


def test_synthetic_is_never_repeated_and_the_stream_stops(corpora, spm_path, vocab):
  cfg = data_config(spm_path, [dict(name="real", format="text", files=corpora["real"], weight=0.5),
                               dict(name="syn", format="text", files=corpora["syn"], weight=0.5,
                                    synthetic=True)])
  it = make_seqio_iterator(cfg, "train", SEQ, 2, seed=3)
  seen = collections.Counter()
  with pytest.raises(DataExhausted, match="syn ran out"):
    for _ in range(1000):
      seen.update(_doc_tag(vocab, toks) for _, toks, _ in segments(next(it)))
  syn = {k: v for k, v in seen.items() if k.startswith("syn")}
  real = {k: v for k, v in seen.items() if k.startswith("real")}
  assert max(syn.values()) == 1                       # no synthetic document twice
  assert len(syn) >= corpora["n_syn"] - 8             # nearly all were used (the tail of the
                                                      # last packed rows is dropped)
  assert max(real.values()) > 1 and len(real) == corpora["n_real"]  # real data repeats


@pytest.mark.parametrize("with_real", [False, True])
def test_task_of_only_empty_documents_is_named_not_spun_on(corpora, spm_path, tmp_path,
                                                            with_real):
  # Repeated forever, a task whose every document is filtered out (empty text) never yields;
  # building the iterator must fail, naming the task and its file, instead of next() hanging.
  empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": ""}] * 5)
  train = [dict(name="blank", format="text", files=empty, weight=0.5)]
  if with_real:
    train.insert(0, dict(name="real", format="text", files=corpora["real"], weight=0.5))
  with pytest.raises(ValueError, match=r"task 'blank' yields no training examples.*"
                                       r"empty\.jsonl.*remove the task"):
    make_seqio_iterator(data_config(spm_path, train), "train", SEQ, 2, seed=0)


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_killed_and_resumed_iterator_yields_the_same_batches(corpora, spm_path):
  cfg = data_config(spm_path, [dict(name="real", format="text", files=corpora["real"], weight=0.7),
                               dict(name="pairs", format="pairs", files=corpora["pairs"],
                                    weight=0.3)])
  full = _take(make_seqio_iterator(cfg, "train", SEQ, 2, seed=5), 12)  # several epochs
  first = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5)
  _take(first, 5)
  saved = json.loads(json.dumps(first.get_state()))  # as the checkpoint stores it
  del first                                          # "killed"
  resumed = make_seqio_iterator(cfg, "train", SEQ, 2, seed=5)
  resumed.set_state(saved)
  for want, got in zip(full[5:], _take(resumed, 7)):
    for k in want:
      np.testing.assert_array_equal(want[k], got[k])
  assert not all(np.array_equal(full[0]["targets"], b["targets"]) for b in full[1:])

  other = make_seqio_iterator(cfg, "train", SEQ, 2, seed=6)
  with pytest.raises(ValueError, match="different data pipeline"):
    other.set_state(saved)


def _host_segments(cfg, hosts):
  out = []
  for h in range(hosts):
    it = make_seqio_iterator(cfg, "eval", SEQ, 4, seed=0, process_index=h, process_count=hosts)
    segs = []
    while True:
      b = next(it)
      assert b["targets"].shape == (4 // hosts, SEQ)
      if it.exhausted:
        break
      segs += [toks for _, toks, _ in segments(b)]
    out.append(segs)
  return out


@pytest.mark.parametrize("files", ["syn", "shards"])  # example- and file-level sharding
def test_host_shards_are_disjoint_and_cover_the_data(corpora, spm_path, vocab, files):
  cfg = data_config(spm_path, [dict(name="syn", format="text", files=corpora[files])])
  h0, h1 = _host_segments(cfg, 2)
  assert h0 and h1 and not set(h0) & set(h1)
  tags = sorted(_doc_tag(vocab, t) for t in h0 + h1)
  assert tags == sorted(f"syn{i}" for i in range(corpora["n_syn"]))


def test_factory_builds_the_seqio_iterator(corpora, spm_path):
  c = ml_collections.ConfigDict()
  c.data = dict(kind="seqio", vocab=spm_path,
                train=[dict(name="real", format="text", files=corpora["real"], weight=1.0)],
                eval=[dict(name="held", format="text", files=corpora["syn"])], pack=True)
  b = next(factory.make_iterator(c.data, "train", SEQ, 4, seed=0))
  assert {k: (v.shape, v.dtype.name) for k, v in b.items()} == {
      "inputs": ((4, SEQ), "int32"), "targets": ((4, SEQ), "int32"),
      "weights": ((4, SEQ), "float32"), "segment_ids": ((4, SEQ), "int32"),
      "positions": ((4, SEQ), "int32")}
  assert b["weights"].sum() > 0
