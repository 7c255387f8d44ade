"""The shipped demo corpus (data/demo_corpus) and the HTML extraction that builds it."""

import os
import struct
import sys

import pytest

from sbp_jax import fileio
from sbp_jax.data import clean, special_tokens, tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "data", "demo_corpus")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import build_demo_corpus  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="module")
def splits():
  fields = ("id", "title", "text")
  return {name: list(fileio.read_jsonl(os.path.join(CORPUS, f"{name}.jsonl.gz"), fields))
          for name in ("train", "heldout")}


def _page(doc):
  return doc["id"].split("#")[0]


def test_files_and_license_are_shipped():
  for f in ("train.jsonl.gz", "heldout.jsonl.gz", "spm_bpe_4096.model", "LICENSE", "README.md"):
    assert os.path.getsize(os.path.join(CORPUS, f)) > 0, f
  license_text = open(os.path.join(CORPUS, "LICENSE"), encoding="utf-8").read()
  assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in license_text
  assert "Summary of changes" in license_text
  total = sum(os.path.getsize(os.path.join(CORPUS, f)) for f in os.listdir(CORPUS))
  assert total < 6e6


def test_sizes_fields_and_order(splits):
  train, heldout = splits["train"], splits["heldout"]
  assert len(train) >= 2000 and len(heldout) >= 50
  assert len(heldout) < 0.1 * len(train)
  for docs in (train, heldout):
    ids = [d["id"] for d in docs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(d["title"] and "#" in d["id"] for d in docs)
  # Many related documents: pages contribute several sections each.
  assert len(train) / len({_page(d) for d in train}) > 4


def test_heldout_is_disjoint_by_page(splits):
  train_pages = {_page(d) for d in splits["train"]}
  held_pages = {_page(d) for d in splits["heldout"]}
  assert not train_pages & held_pages
  assert all(build_demo_corpus.heldout_page(p) for p in held_pages)
  assert not any(build_demo_corpus.heldout_page(p) for p in train_pages)
  assert not {d["text"] for d in splits["train"]} & {d["text"] for d in splits["heldout"]}


def test_documents_are_clean_unique_and_within_the_token_limit(splits):
  vocab = tokenizer.load_vocabulary(os.path.join(CORPUS, "spm_bpe_4096.model"))
  sp = vocab.tokenizer
  docs = splits["train"] + splits["heldout"]
  texts = [d["text"] for d in docs]
  assert len(set(texts)) == len(texts)
  assert all(len(t) >= 300 for t in texts)
  assert all(clean.clean_text(t) == t for t in texts[::10])  # already cleaned (a sample: ftfy is slow)
  lengths = [len(ids) for ids in sp.encode(texts)]
  assert max(lengths) <= clean.MAX_TOKENS
  assert sum(lengths) > 1_000_000  # a real corpus, not a toy


def test_tokenizer_loads_with_special_tokens():
  path = os.path.join(CORPUS, "spm_bpe_4096.model")
  vocab = tokenizer.load_vocabulary(path)
  sp = vocab.tokenizer
  assert vocab.vocab_size == 4096
  assert (sp.pad_id(), sp.eos_id(), sp.unk_id(), sp.bos_id()) == (0, 1, 2, -1)
  text = "The json module" + special_tokens.DOC_SEP + "  def f():\n\treturn 1  # ok\n🐍"
  ids = vocab.encode(text)
  assert vocab.decode(ids) == text
  assert sp.piece_to_id(special_tokens.DOC_SEP) in ids
  # Trained on English prose: common words are single pieces.
  assert len(sp.encode("The function returns the value")) <= 6


def test_files_are_reproducible_gzip():
  for name in ("train", "heldout"):
    with open(os.path.join(CORPUS, f"{name}.jsonl.gz"), "rb") as f:
      head = f.read(10)
    assert head[:2] == b"\x1f\x8b" and struct.unpack("<I", head[4:8])[0] == 0  # no mtime
    assert not head[3] & 0x08  # no file name stored


PAGE = """<html><head><title>demo &#8212; docs</title></head><body>
<div class="related" role="navigation"><h3>Navigation</h3><a href="x">next</a></div>
<div class="body" role="main">
<section id="module-demo"><h1>demo — A module<a class="headerlink" href="#x">¶</a></h1>
<p>Intro   text
spread over lines.</p>
<nav class="contents local" id="contents"><ul><li><a href="#a">Skip me</a></li></ul></nav>
<div class="toctree-wrapper compound"><ul><li>toc entry</li></ul></div>
<section id="usage"><h2>Usage<a class="headerlink" href="#usage">¶</a></h2>
<p>Call <code>f()</code>:</p>
<div class="highlight"><pre><span>def</span> f():
    return  1
</pre></div>
<table><tr><th><p>A</p></th><th><p>B</p></th></tr><tr><td>1</td><td>2</td></tr></table>
<section id="details"><h3>Details</h3><ul><li><p>one</p></li><li>two</li></ul></section>
</section></section></div>
<div class="footer">Copyright</div></body></html>"""


def test_extract_page_sections():
  docs, short = build_demo_corpus.extract_page(PAGE, "library/demo", min_chars=1)
  assert short == 0
  assert [(d["id"], d["title"]) for d in docs] == [
      ("library/demo#module-demo", "demo — A module"),
      ("library/demo#usage", "demo — A module: Usage"),
      ("library/demo#details", "demo — A module: Usage: Details")]
  assert docs[0]["text"] == "Intro text spread over lines."
  assert docs[1]["text"] == "Usage\n\nCall f():\n\ndef f():\n    return  1\n\nA | B\n1 | 2"
  assert docs[2]["text"] == "Details\n\n- one\n\n- two"
  # Sections shorter than min_chars are counted, not kept.
  docs, short = build_demo_corpus.extract_page(PAGE, "library/demo", min_chars=30)
  assert [d["id"] for d in docs] == ["library/demo#usage"] and short == 2
