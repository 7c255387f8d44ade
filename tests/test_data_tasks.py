"""seqio tasks and the feature converter: packing isolates documents, loss
weights fall only where each format says."""

import jax
import numpy as np
import pytest

from configs.model import presets
from sbp_jax.data import special_tokens
from sbp_jax.data.pipeline import make_seqio_iterator
from sbp_jax.model import ModelConfig, Transformer
from tests.seqio_helpers import (  # noqa: F401
    _record_cache, data_config, make_docs, segments, spm_path, vocab, write_jsonl)

SEQ = 48


def _ids(vocab, text):
  return vocab.encode(text)


def _all_batches(it):
  out = []
  while True:
    b = next(it)
    if it.exhausted:
      return out
    out.append(b)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, spm_path):
  """All eval batches of 40 short documents, packed into SEQ-long rows."""
  docs = make_docs(40, seed=1, lo=3, hi=40)
  f = write_jsonl(tmp_path_factory.mktemp("text") / "t.jsonl", [{"text": d} for d in docs])
  cfg = data_config(spm_path, [dict(name="t", format="text", files=f)])
  return docs, _all_batches(make_seqio_iterator(cfg, "eval", SEQ, 4, seed=0))


def test_packed_text_segments_are_whole_documents(text_run, vocab):
  docs, batches = text_run
  pieces = []
  for b in batches:
    for r in range(b["targets"].shape[0]):
      seg, pos, tgt, inp = (b[k][r] for k in ("segment_ids", "positions", "targets", "inputs"))
      assert np.all(b["weights"][r] == (seg > 0))  # text: loss on every real token
      assert np.all(tgt[seg == 0] == 0) and np.all(pos[seg == 0] == 0)
      for s in set(seg.tolist()) - {0}:
        idx = np.flatnonzero(seg == s)
        assert np.all(np.diff(idx) == 1)                          # contiguous
        assert pos[idx].tolist() == list(range(len(idx)))         # positions restart
        assert inp[idx[0]] == 0                                   # fresh start token
        assert inp[idx[1:]].tolist() == tgt[idx[:-1]].tolist()    # shifted within the doc only
        pieces.append(tgt[idx].tolist())
  # Each document is its tokens + EOS, cut into SEQ-long pieces; nothing lost or merged.
  want = []
  for d in docs:
    ids = _ids(vocab, d) + [1]
    want += [ids[i:i + SEQ] for i in range(0, len(ids), SEQ)]
  assert sorted(map(tuple, pieces)) == sorted(map(tuple, want))
  assert any(len(_ids(vocab, d)) + 1 > SEQ for d in docs)  # some documents were cut
  assert any(len(set(b["segment_ids"][r].tolist()) - {0}) > 1
             for b in batches for r in range(4))  # some rows really are packed


def test_no_token_sees_another_document(text_run):
  """Logits of each document inside a packed row equal its logits alone."""
  _, batches = text_run
  count = lambda seg: len(set(seg.tolist()) - {0})  # noqa: E731
  b, row = max(((b, r) for b in batches for r in range(4)),
               key=lambda br: count(br[0]["segment_ids"][br[1]]))
  seg = b["segment_ids"][row]
  ids = sorted(set(seg.tolist()) - {0})
  assert len(ids) >= 2
  alone = {k: np.zeros((len(ids), SEQ), np.int32) for k in ("inputs", "positions", "segment_ids")}
  for i, s in enumerate(ids):
    idx = np.flatnonzero(seg == s)
    alone["inputs"][i, :len(idx)] = b["inputs"][row, idx]
    alone["positions"][i, :len(idx)] = np.arange(len(idx))
    alone["segment_ids"][i, :len(idx)] = 1
  model = Transformer(ModelConfig.from_dict(presets.get("tiny", vocab_size=512, dtype="float32",
                                                         remat_policy="none")))
  x = {k: np.concatenate([b[k][row:row + 1], alone[k]]) for k in alone}  # one compile

  @jax.jit
  def logits(x):
    args = (x["inputs"], x["positions"], x["segment_ids"])
    return model.apply(model.init(jax.random.key(0), *args), *args)["logits"]
  out = logits(x)
  lp, la = out[:1], out[1:]
  for i, s in enumerate(ids):
    idx = np.flatnonzero(seg == s)
    np.testing.assert_allclose(lp[0, idx], la[i, :len(idx)], atol=2e-5, rtol=2e-5)


def test_pairs_weight_only_d2_and_eos_and_cut_d1_to_fit(tmp_path, spm_path, vocab):
  long_d1 = " ".join(make_docs(1, seed=3, lo=60, hi=60))
  recs = [{"d1": f"first {i} river", "d2": f"second {i} alpha beta"} for i in range(5)]
  recs.append({"d1": long_d1, "d2": "short answer here"})
  f = write_jsonl(tmp_path / "p.jsonl", recs)
  cfg = data_config(spm_path, [dict(name="p", format="pairs", files=f, max_len=32)])
  sep = vocab.tokenizer.piece_to_id(special_tokens.DOC_SEP)
  got = [s for b in _all_batches(make_seqio_iterator(cfg, "eval", SEQ, 2, seed=0))
         for s in segments(b)]
  assert len(got) == len(recs)
  for r, (_, toks, w) in zip(recs[:-1], got):
    d1, d2 = _ids(vocab, r["d1"]), _ids(vocab, r["d2"])
    assert list(toks) == d1 + [sep] + d2 + [1]
    assert w.tolist() == [0.0] * (len(d1) + 1) + [1.0] * (len(d2) + 1)
  _, toks, w = got[-1]  # over max_len=32: d1 is cut, keeping its beginning; d2 intact
  d2 = _ids(vocab, recs[-1]["d2"])
  keep = 32 - len(d2) - 2
  assert list(toks) == _ids(vocab, long_d1)[:keep] + [sep] + d2 + [1]
  assert w.tolist() == [0.0] * (keep + 1) + [1.0] * (len(d2) + 1)


def test_prompt_response_weights_only_response(tmp_path, spm_path, vocab):
  long_prompt = "question " + " ".join(make_docs(1, seed=4, lo=50, hi=50)) + " so what"
  recs = [{"prompt": "what is a river", "response": "a flowing body of water"},
          {"prompt": long_prompt, "response": "the answer"}]
  f = write_jsonl(tmp_path / "s.jsonl", recs)
  cfg = data_config(spm_path, [dict(name="s", format="prompt_response", files=f)])
  got = segments(next(make_seqio_iterator(cfg, "eval", SEQ, 2, seed=0)))
  (_, t0, w0), (_, t1, w1) = sorted(got, key=lambda s: len(s[1]))
  p, resp = _ids(vocab, recs[0]["prompt"]), _ids(vocab, recs[0]["response"])
  assert list(t0) == p + resp + [1]
  assert w0.tolist() == [0.0] * len(p) + [1.0] * (len(resp) + 1)
  ans = _ids(vocab, "the answer")
  assert len(t1) == SEQ and w1.sum() == len(ans) + 1
  keep = SEQ - len(ans) - 1
  assert list(t1[:keep]) == _ids(vocab, long_prompt)[-keep:]  # the prompt keeps its end


def test_unpacked_rows_hold_one_example(tmp_path, spm_path):
  f = write_jsonl(tmp_path / "t.jsonl", [{"text": d} for d in make_docs(8, seed=5, lo=2, hi=6)])
  cfg = data_config(spm_path, [dict(name="t", format="text", files=f)], pack=False)
  b = next(make_seqio_iterator(cfg, "eval", SEQ, 4, seed=0))
  for r in range(4):
    n = int((b["targets"][r] != 0).sum())
    assert b["segment_ids"][r].tolist() == [1] * n + [0] * (SEQ - n)
    assert b["positions"][r][:n].tolist() == list(range(n))
    assert b["weights"][r].sum() == n


def test_missing_doc_sep_is_a_clear_error(tmp_path):
  import sentencepiece as spm
  prefix = str(tmp_path / "plain")
  spm.SentencePieceTrainer.train(sentence_iterator=iter(make_docs(200, 0)), model_prefix=prefix,
                                 vocab_size=300, model_type="bpe", pad_id=0, eos_id=1, unk_id=2,
                                 bos_id=-1, byte_fallback=True, hard_vocab_limit=False,
                                 minloglevel=2)
  f = write_jsonl(tmp_path / "p.jsonl", [{"d1": "a", "d2": "b"}])
  cfg = data_config(prefix + ".model", [dict(name="p", format="pairs", files=f)])
  with pytest.raises(ValueError, match=r"plain\.model.*<\|doc_sep\|>"):
    make_seqio_iterator(cfg, "eval", SEQ, 1, seed=0)


def test_bad_config_entries(tmp_path, spm_path):
  f = write_jsonl(tmp_path / "t.jsonl", [{"text": "a"}])
  for entry, msg in [(dict(name="t", format="poem", files=f), r"data\.train\[0\].*'poem'"),
                     (dict(name="t", files=f), r"data\.train\[0\].*'format' is missing"),
                     (dict(name="t", format="text", files=f, weigth=1), "unknown fields")]:
    with pytest.raises(ValueError, match=msg):
      make_seqio_iterator(data_config(spm_path, [entry]), "train", SEQ, 1, seed=0)
