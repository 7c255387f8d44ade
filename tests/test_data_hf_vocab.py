"""Hugging Face tokenizers in the data layer: ids equal transformers', the formats
train on the model's own bos/eos/pad ids (id 0 is an ordinary token), and bad
tokenizer files or settings fail with one message naming the file and the fix."""

import json
import os

import ml_collections
import numpy as np
import pytest

from sbp_jax.data import pipeline, vocab as vocab_lib
from sbp_jax.data.hf_tokenizer import HFTokenizer
from tests import hf_fixtures as hx
from tests.seqio_helpers import _record_cache, write_jsonl  # noqa: F401


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
  d = tmp_path_factory.mktemp("hf")
  return {"llama3": hx.llama3_tokenizer(d / "llama3"), "qwen": hx.qwen_tokenizer(d / "qwen")}


def _tok(path, **kw):
  return ml_collections.ConfigDict(dict(kind="hf", path=path, **kw))


@pytest.mark.parametrize("style", ["llama3", "qwen"])
def test_ids_equal_transformers(toks, style):
  import transformers
  from sbp_jax.data.sources import tf
  path = toks[style]
  ref = transformers.AutoTokenizer.from_pretrained(path)
  ours = HFTokenizer(path)
  vocab = vocab_lib.make_vocabulary(_tok(path, pad_id=ours.token_to_id(
      "<|reserved_special_token_0|>") if style == "llama3" else -1))
  ds = tf.data.Dataset.from_tensor_slices(hx.PROBES).map(vocab.encode_tf)
  in_graph = [x.tolist() for x in ds.as_numpy_iterator()]
  for text, graph_ids in zip(hx.PROBES, in_graph):
    want = ref(text, add_special_tokens=False)["input_ids"]
    assert ours.encode(text) == want, text
    assert graph_ids == want, text  # the tf.data path (numpy_function) too
    assert ours.decode(want) == ref.decode(want), text
  chat = hx.PROBES[5] if style == "qwen" else hx.PROBES[6]
  assert ours.token_to_id("<|im_end|>" if style == "qwen" else "<|eot_id|>") in ours.encode(chat)
  assert 0 in ours.encode("!!!")  # id 0 is text here, not padding
  assert (vocab.bos_id, vocab.eos_id, vocab.pad_id) == (
      (ref.bos_token_id, ref.eos_token_id, ours.token_to_id("<|reserved_special_token_0|>"))
      if style == "llama3" else (None, ref.eos_token_id, ref.pad_token_id))


def _first_batch(data, seq_len=24, batch=4):
  it = pipeline.make_seqio_iterator(ml_collections.ConfigDict(data), "train", seq_len, batch,
                                    seed=0)
  return next(it)


@pytest.mark.parametrize("pack", [True, False])
def test_text_and_sft_batches_use_the_models_ids(toks, tmp_path, pack):
  path = toks["llama3"]
  tok = HFTokenizer(path)
  pad = tok.token_to_id("<|reserved_special_token_0|>")
  docs = ["!!! wow", "cat sat on the mat", "!"]
  f = write_jsonl(tmp_path / "t.jsonl", [{"text": d} for d in docs])
  base = dict(kind="seqio", tokenizer=dict(_tok(path, pad_id=pad)), pack=pack, shuffle_buffer=8)
  b = _first_batch({**base, "train": [dict(name="hft", format="text", files=f)]})
  real = b["segment_ids"] > 0
  assert np.all(b["targets"][~real] == pad) and np.all(b["inputs"][~real] == pad)
  assert np.all(b["weights"][~real] == 0) and np.all(b["weights"][real] == 1)
  zeros = (b["targets"] == 0) & real
  assert zeros.any()  # "!" (id 0) is trained on, not taken for padding
  for r in range(len(b["targets"])):
    for s in set(b["segment_ids"][r].tolist()) - {0}:
      m = b["segment_ids"][r] == s
      t, x = b["targets"][r][m].tolist(), b["inputs"][r][m].tolist()
      assert t[-1] == tok.eos_id and x[0] == tok.bos_id and x[1:] == t[:-1]
      assert tok.decode(t[:-1]) in docs
  p = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q: 0!", "response": " A: !1"}])
  b = _first_batch({**base, "train": [dict(name="hfp", format="prompt_response", files=p)]})
  row, seg = b["targets"][0], b["segment_ids"][0]
  n = int((seg == 1).sum())  # packed, the repeated record fills further segments
  prompt, response = tok.encode("Q: 0!"), tok.encode(" A: !1")
  assert row[:n].tolist() == prompt + response + [tok.eos_id]
  assert b["weights"][0][:n].tolist() == [0] * len(prompt) + [1] * (len(response) + 1)
  real = seg > 0
  assert np.all(row[~real] == pad) and np.all(b["weights"][0][~real] == 0)
  assert pack or not real[n:].any()


def test_pairs_separate_with_the_doc_sep_text_when_the_vocab_lacks_it(toks, tmp_path):
  path = toks["qwen"]
  tok = HFTokenizer(path)
  f = write_jsonl(tmp_path / "pairs.jsonl", [{"d1": "one two", "d2": "three"}])
  b = _first_batch(dict(kind="seqio", tokenizer=dict(_tok(path)), pack=True, shuffle_buffer=8,
                        train=[dict(name="hfpairs", format="pairs", files=f)]))
  sep = vocab_lib.doc_sep_ids(tok)
  assert len(sep) > 1  # no reserved token: its text, as synthesis prompts write it
  n = int((b["segment_ids"][0] > 0).sum())
  d1, d2 = tok.encode("one two"), tok.encode("three")
  assert b["targets"][0][:n].tolist() == d1 + sep + d2 + [tok.eos_id]
  assert b["inputs"][0][0] == tok.pad_id  # Qwen has no bos: sequences start from its pad


def _expect(match, fn):
  with pytest.raises(ValueError, match=match) as e:
    fn()
  return str(e.value)


def test_a_tokenizer_without_eos_is_refused(tmp_path):
  path = hx.llama3_tokenizer(tmp_path / "noeos", eos=False)
  msg = _expect("has no eos token", lambda: vocab_lib.make_vocabulary(_tok(path, pad_id=5)))
  assert os.path.join(path, "tokenizer.json") in msg and "Add eos_token" in msg


def test_a_pad_id_colliding_with_a_real_token_needs_mask_pad(toks):
  path = toks["llama3"]
  tok = HFTokenizer(path)
  msg = _expect("no pad token", lambda: vocab_lib.make_vocabulary(_tok(path)))
  assert "tokenizer.pad_id" in msg
  for pad, what in ((tok.eos_id, "its eos"), (0, "an ordinary token")):
    msg = _expect(what, lambda: vocab_lib.make_vocabulary(_tok(path, pad_id=pad)))
    assert "tokenizer.json" in msg and "tokenizer.mask_pad=True" in msg
    assert vocab_lib.make_vocabulary(_tok(path, pad_id=pad, mask_pad=True)).pad_id == pad


def test_a_vocab_larger_than_the_embedding_is_refused(toks):
  data = ml_collections.ConfigDict(dict(kind="seqio", tokenizer=dict(_tok(toks["qwen"]))))
  msg = _expect("embedding has 300 rows", lambda: vocab_lib.check_fits(data, 300))
  assert toks["qwen"] in msg and "model.vocab_size" in msg
  vocab_lib.check_fits(data, 512)


def test_the_job_tokenizer_comes_from_the_import_directory(toks, tmp_path):
  imp = tmp_path / "import"
  (imp / "checkpoints").mkdir(parents=True)
  (imp / "model.json").write_text(json.dumps({}))
  import shutil
  shutil.copytree(toks["qwen"], imp / "tokenizer")
  c = ml_collections.ConfigDict(dict(
      tokenizer=dict(kind="sentencepiece", path="", pad_id=-1, mask_pad=False),
      train=dict(init_from=str(imp / "checkpoints")),
      data=dict(kind="replay", rate=0.1, main=dict(kind="seqio", vocab=""),
                replay=dict(kind="seqio", vocab=""))))
  r = vocab_lib.with_job_tokenizer(c)
  assert r.data.main.tokenizer.path == str(imp / "tokenizer") == r.data.replay.tokenizer.path
  assert r.data.main.tokenizer.kind == "hf"
  c.tokenizer.path = toks["llama3"]
  msg = _expect("name different tokenizers", lambda: vocab_lib.with_job_tokenizer(c))
  assert "tokenizer.path" in msg and "train.init_from" in msg
