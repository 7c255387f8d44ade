"""Document cleaning and filtering: concrete inputs and their expected outputs."""

import pytest

from sbp_jax.data import clean

LONG_URL = "https://example.com/" + "section/" * 12 + "page.html?ref=abc"  # 133 chars


@pytest.mark.parametrize("raw, want", [
    # Runs of 3+ line breaks (blank lines may hold spaces) become one blank line.
    ("a\n\n\nb", "a\n\nb"),
    ("a\n \n\t\n\n\nb\n\nc\nd", "a\n\nb\n\nc\nd"),
    ("one\r\n\r\n\r\n\r\ntwo", "one\n\ntwo"),  # Windows line ends first become \n
    ("x  \ny\t\n", "x\ny"),  # trailing spaces go
    # Code indentation, including the first line's, is kept.
    ("\n\n    def f():\n        return 1\n\n\n\n    f()\n", "    def f():\n        return 1\n\n    f()"),
    # Long URLs go with the space before them; short ones and their punctuation stay.
    (f"See {LONG_URL} for details.", "See for details."),
    (f"Read it ({LONG_URL}).", "Read it ()."),
    (f"Docs live at {LONG_URL}.\nMore at https://python.org/docs.", "Docs live at.\nMore at https://python.org/docs."),
    ("Visit www." + "x" * 90 + ".com today", "Visit today"),
    # Mojibake and control characters are repaired; good Unicode is left alone.
    ("cafÃ©", "café"),
    ("The Mona Lisa doesnâ€™t have eyebrows.", "The Mona Lisa doesn’t have eyebrows."),
    ("red\x1b[31m text\x00 here", "red text here"),
    ("“Curly” quotes, ＦＵＬＬ width, naïve 日本語 🎉", "“Curly” quotes, ＦＵＬＬ width, naïve 日本語 🎉"),
    ("x &amp; y <b>", "x &amp; y <b>"),  # no HTML unescaping of plain text
    (" \n\t\n ", ""),
])
def test_clean_text(raw, want):
  assert clean.clean_text(raw) == want


def test_url_length_is_configurable():
  url = "https://example.com/abcdefghij"  # 30 chars
  assert clean.clean_text(f"at {url} now", max_url_chars=30) == f"at {url} now"
  assert clean.clean_text(f"at {url} now", max_url_chars=29) == "at now"


def test_filter_drops_and_counts_by_reason():
  words = len  # a stand-in tokenizer: one token per character keeps the limits readable
  docs = [
      {"id": "a", "text": "First   document\n\n\n\nwith text."},
      {"id": "b", "text": "   \n\n "},                              # empty
      {"id": "c", "text": "First   document\n\nwith text."},       # duplicate after cleaning
      {"id": "d", "text": "x" * 41},                               # over the 40-token limit
      {"id": "e", "text": "cafÃ© " + "y" * 30},                    # 35 chars once repaired
      {"id": "f", "text": "y" * 40},                               # exactly at the limit: kept
      {"id": "g", "text": "cafÃ© " + "y" * 30},                    # duplicate of e
      {"id": "h", "text": ""},                                     # empty
  ]
  kept, report = clean.filter_documents(docs, words, max_tokens=40)
  assert [d["id"] for d in kept] == ["a", "e", "f"]
  assert kept[0] == {"id": "a", "text": "First   document\n\nwith text."}
  assert kept[1]["text"] == "café " + "y" * 30
  assert report["dropped"] == {"empty": 2, "duplicate": 2, "too_long": 1}
  assert report["input"] == 8 and report["kept"] == 3 and report["max_tokens"] == 40
  assert report["modified_by_cleaning"] == 4  # a, b, e, g (c was clean already)


def test_filter_uses_a_vocabulary_for_the_default_4096_limit():

  class Spaces:  # anything with encode works, e.g. a seqio vocabulary
    def encode(self, text):
      return text.split(" ")

  short = " ".join(["w"] * 4096)
  kept, report = clean.filter_documents(
      [{"text": short}, {"text": short + " w"}], clean.token_length_of(Spaces()))
  assert [len(d["text"].split(" ")) for d in kept] == [4096]
  assert report["dropped"]["too_long"] == 1 and report["max_tokens"] == 4096


def test_streaming_filter_with_other_field():
  f = clean.DocumentFilter(None, text_field="body")
  assert f({"body": "a\n\n\n\nb", "n": 1}) == {"body": "a\n\nb", "n": 1}
  assert f({"body": "a\n\nb", "n": 2}) is None
  assert f({"body": "z" * 100_000}) is not None  # no length filter when told so
  assert f.report()["dropped"] == {"empty": 0, "duplicate": 1, "too_long": 0}
  assert f.report()["max_tokens"] is None
