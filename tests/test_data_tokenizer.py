"""SentencePiece tokenizer: training, special tokens, round trips, the CLI."""

import glob
import gzip
import json
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from sbp_jax.data import special_tokens as st
from sbp_jax.data import tokenizer
from sbp_jax.generate.text_codec import make_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Accents, CJK, emoji (none of them in the training text: byte fallback),
# indented code with tabs and trailing spaces, and every special token glued to text.
SAMPLES = [
    "Café, naïve façade — Zürich; ½ ≠ ∞",
    "日本語のテキストと한국어 🎉🐍 done",
    "def f(x):\n    if x:\n\t\treturn x  # two spaces  \n\n\n  pass\n",
    "  leading and trailing spaces  ",
    "Q: 2+2?" + st.THINK_START + "think" + st.THINK_END + st.ANSWER + "4" + st.IM_END,
    "d1 text." + st.DOC_SEP + "d2 text" + st.IM_START + "user\nhi" + st.IM_END,
]


def _training_texts():
  """The repository's own Python sources and README: real text and code."""
  files = sorted(glob.glob(os.path.join(ROOT, "sbp_jax", "**", "*.py"), recursive=True))
  files.append(os.path.join(ROOT, "README.md"))
  return [open(f, encoding="utf-8").read() for f in files]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  return tokenizer.train_sentencepiece(
      _training_texts(), str(tmp_path_factory.mktemp("spm") / "tok"), 512)


def test_ids_and_special_tokens_are_single_pieces(model_path):
  vocab = tokenizer.load_vocabulary(model_path)
  sp = vocab.tokenizer
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  assert vocab.vocab_size == 512 and vocab.eos_id == 1
  ids = [sp.piece_to_id(t) for t in st.REQUIRED]
  assert len(set(ids)) == len(st.REQUIRED) and min(ids) > 2
  for t, i in zip(st.REQUIRED, ids):
    got = sp.encode(f"x {t}y")  # matched even with no space after it
    assert got.count(i) == 1, (t, [sp.id_to_piece(g) for g in got])


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(model_path, text):
  tok = make_tokenizer(ml_collections.ConfigDict(dict(kind="sentencepiece", path=model_path)))
  ids = tok.encode(text)
  assert tok.decode(ids) == text
  assert 2 not in ids  # byte fallback: nothing becomes <unk>
  # seqio's Python and TensorFlow encoders (the latter runs in data pipelines) agree.
  vocab = tok.vocabulary
  assert vocab.encode(text) == ids
  np.testing.assert_array_equal(vocab.encode_tf(tf.constant(text)).numpy(), ids)
  assert vocab.decode(ids) == text


def test_sampler_adapter(model_path):
  tok = make_tokenizer(ml_collections.ConfigDict(dict(kind="sentencepiece", path=model_path)))
  assert tok.eos_ids == (1,) and tok.pad_id == 0 and tok.vocab_size == 512
  think_end = tok.token_to_id(st.THINK_END)
  assert tok.encode(st.THINK_END) == [think_end]
  assert tok.token_to_id("surely-not-a-piece-xyz") is None
  # Emoji fall back to UTF-8 bytes: 4 byte pieces, decoded back to the character.
  ids = tok.encode("🐍")
  assert len(ids) == 4 and tok.decode(ids) == "🐍"
  assert tok.decode(ids + [1, 0]) == "🐍"  # eos/pad decode to nothing


def test_training_is_deterministic(model_path, tmp_path):
  again = tokenizer.train_sentencepiece(_training_texts(), str(tmp_path / "tok"), 512)
  assert again != model_path
  assert open(again, "rb").read() == open(model_path, "rb").read()


def test_long_documents_are_cut_not_skipped():
  doc = "".join(f"line {i} ünïcode\n" for i in range(2000)) + "x" * 5000
  chunks = list(tokenizer._chunks([doc, "", "short"], 1000))
  assert "".join(chunks[:-1]) == doc and chunks[-1] == "short"
  assert all(len(c.encode("utf-8")) <= 1000 for c in chunks)


def test_model_without_special_tokens_is_rejected(tmp_path):
  bad = tokenizer.train_sentencepiece(_training_texts(), str(tmp_path / "plain"), 512,
                                      special_symbols=())
  with pytest.raises(ValueError) as e:
    tokenizer.load_vocabulary(bad)
  msg = str(e.value)
  assert bad in msg and st.DOC_SEP in msg and "scripts/train_tokenizer.py" in msg
  with pytest.raises(ValueError, match="plain.model"):
    make_tokenizer(ml_collections.ConfigDict(dict(kind="sentencepiece", path=bad)))
  with pytest.raises(FileNotFoundError, match="nope.model"):
    tokenizer.load_vocabulary(str(tmp_path / "nope.model"))


def test_cli_trains_from_jsonl_gz(tmp_path):
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(ROOT, "scripts"))
  import train_tokenizer  # pylint: disable=g-import-not-at-top
  src = tmp_path / "docs.jsonl.gz"
  with gzip.open(src, "wt", encoding="utf-8") as f:
    for t in _training_texts():
      f.write(json.dumps({"id": "x", "text": t}) + "\n")
  path = train_tokenizer.main(["--input", str(src), "--vocab_size", "400",
                               "--output", str(tmp_path / "cli")])
  assert tokenizer.load_vocabulary(path).vocab_size == 400
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:2: needs a string field 'text', but it is mis"):
    train_tokenizer.main(["--input", str(bad), "--vocab_size", "400",
                          "--output", str(tmp_path / "never")])


def test_trains_when_stderr_has_no_file_descriptor(tmp_path, monkeypatch):
  # pytest --capture=sys and notebooks replace sys.stderr with a stream without fileno().
  import io  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from sbp_jax.data.tokenizer import train_sentencepiece  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, "stderr", io.StringIO())
  texts = [f"document {i} about rivers, bridges and {i * 7} stone halls." for i in range(300)]
  path = train_sentencepiece(texts, str(tmp_path / "spm"), vocab_size=300)
  assert os.path.exists(path)
