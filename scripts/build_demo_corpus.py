"""Builds the shipped demo corpus (data/demo_corpus) from Python's documentation.

Source: Debian's `python3.11-doc` package (the HTML manual of Python 3.11,
under the PSF License, which allows redistribution of derived works). Get it
without root and run:

  apt-get download python3.11-doc
  .venv/bin/python scripts/build_demo_corpus.py --source python3.11-doc_*.deb

(`--source` also takes an already extracted directory.) Steps:
  1. every page of library/, tutorial/, howto/, reference/ is split into one
     document per section down to h3 (a section's text before its first
     subsection is a document of its own); navigation, local tables of contents, toctrees and permalink
     marks are dropped, code examples are kept verbatim; sections shorter
     than --min_chars characters are dropped;
  2. sbp_jax.data.clean removes empty documents and exact duplicates;
  3. a page-level hash sends ~5% of pages (all their sections) to the held-out
     split, so related sections never straddle the split;
  4. a SentencePiece BPE tokenizer (vocab 4096) is trained on the train split
     and documents over 4,096 of its tokens are dropped;
  5. train.jsonl.gz / heldout.jsonl.gz (sorted by id, gzip without timestamp,
     so a rebuild is byte-identical), spm_bpe_4096.model, LICENSE (the PSF
     license from the package's copyright file) and README.md are written.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import html.parser
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sbp_jax.data import clean  # pylint: disable=g-import-not-at-top
from sbp_jax import fileio
from sbp_jax.data import tokenizer

DOC_ROOT = "usr/share/doc/python3.11/html"
COPYRIGHT = "usr/share/doc/python3.11-doc/copyright"
CHANGELOG = "usr/share/doc/python3.11-doc/changelog.Debian.gz"
SUBDIRS = ("library", "tutorial", "howto", "reference", "faq", "using", "extending")
HELDOUT_PERCENT = 5

_BLOCK = {"p", "div", "section", "dl", "dt", "dd", "ul", "ol", "li", "pre", "blockquote", "table",
          "tr", "h1", "h2", "h3", "h4", "h5", "h6", "figure", "aside", "br", "hr", "caption"}
_PARAGRAPH = {"p", "pre", "dl", "ul", "ol", "table", "blockquote", "h3", "h4", "h5", "h6",
              "section", "figure", "aside"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "source"}


def _skip(tag: str, attrs: dict) -> bool:
  """Elements whose text is navigation, not prose."""
  cls = set((attrs.get("class") or "").split())
  return (tag in ("script", "style", "nav", "img", "svg", "button", "form")
          or (tag == "a" and "headerlink" in cls)  # the pilcrow permalinks
          or (tag == "div" and cls & {"toctree-wrapper", "contents", "sphinxsidebar", "related",
                                      "footer"}))


class SectionParser(html.parser.HTMLParser):
  """Text of the main body of one Sphinx page, cut at the headings of
  `levels` (h1..h3 by default: a section's text up to its first subsection
  is one piece, each subsection another).

  Produces `sections`: a list of [section id, heading path, text].
  """

  def __init__(self, levels: int = 3):
    super().__init__(convert_charrefs=True)
    self.cut = {f"h{i}" for i in range(1, levels + 1)}
    self.sections: list[list] = []
    self._path: list[str] = []  # headings of the enclosing sections
    self._stack: list[tuple[str, bool]] = []  # (tag, opened a skipped region)
    self._skipping = 0
    self._in_body = 0  # depth of <div role="main">, 0 when outside
    self._pre = 0
    self._table = 0  # inside a table: rows become lines, cells are joined by " | "
    self._heading: list[str] | None = None  # text of the h1/h2 being read
    self._section_id = ""
    self._out: list[str] = []

  # Output helpers: text is a list of pieces; breaks are markers folded later.
  def _break(self, n: int):
    i = len(self._out) - 1
    while i >= 0 and self._out[i] == " ":
      i -= 1
    if i >= 0 and self._out[i] == "- ":  # a list item's first paragraph follows its marker
      return
    self._out.append("\n" * n)

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag in _VOID:
      if tag == "br" and self._in_body and not self._skipping:
        self._out.append("\n")
      return
    skip = bool(self._in_body) and _skip(tag, attrs)
    self._stack.append((tag, skip))
    if tag == "div" and attrs.get("role") == "main":
      self._in_body = len(self._stack)
      return
    if not self._in_body:
      return
    if skip:
      self._skipping += 1
    if self._skipping:
      return
    if tag == "section" and attrs.get("id"):
      self._section_id = attrs["id"]
    if tag in self.cut:
      self._heading = []
      return
    if tag == "pre":
      self._pre += 1
    if tag == "table":
      self._table += 1
      self._break(2)
    elif self._table:
      if tag == "tr":
        self._break(1)
      elif tag in ("td", "th"):
        self._out.append(" | ")
      elif tag in _BLOCK:
        self._out.append(" ")
    elif tag in _BLOCK:
      self._break(2 if tag in _PARAGRAPH else 1)
    if tag == "li":
      self._out.append("- ")

  def handle_endtag(self, tag):
    if tag in _VOID:
      return
    # Tolerate unclosed tags (e.g. <p> closed implicitly) by unwinding to the match.
    while self._stack:
      open_tag, skip = self._stack.pop()
      if skip:
        self._skipping -= 1
      if self._in_body and len(self._stack) < self._in_body:
        self._in_body = 0
      if open_tag == tag:
        break
    if not self._in_body or self._skipping:
      return
    if tag in self.cut and self._heading is not None:
      text = " ".join("".join(self._heading).split())
      self._heading = None
      self._start_section(tag, text)
      return
    if tag == "pre":
      self._pre = max(0, self._pre - 1)
    if tag == "table":
      self._table = max(0, self._table - 1)
      self._break(2)
    elif self._table:
      self._out.append(" " if tag in _BLOCK and tag != "tr" else "")
    elif tag in _BLOCK:
      self._break(2 if tag in _PARAGRAPH else 1)

  def handle_data(self, data):
    if not self._in_body or self._skipping:
      return
    if self._heading is not None:
      self._heading.append(data)
    elif self._pre:
      self._out.append("\x00" + data + "\x00")  # verbatim, protected from whitespace folding
    else:
      self._out.append(re.sub(r"\s+", " ", data))  # HTML: any whitespace run is one space

  def _start_section(self, tag: str, heading: str):
    self._flush()
    level = int(tag[1])
    self._path = self._path[:level - 1] + [""] * (level - 1 - len(self._path)) + [heading]
    self.sections.append([self._section_id, [h for h in self._path if h], ""])
    self._out = [heading, "\n\n"] if level > 1 else []  # the page title is in `title`

  def _flush(self):
    if self.sections:
      self.sections[-1][2] += _fold("".join(self._out))
    self._out = []

  def close(self):
    super().close()
    self._flush()


def _fold(raw: str) -> str:
  """Collapses whitespace outside <pre> blocks; keeps code verbatim."""
  parts = raw.split("\x00")
  out = []
  for i, part in enumerate(parts):
    if i % 2:  # inside <pre>
      out.append(part)
    else:
      part = re.sub(r" {2,}", " ", part)
      part = re.sub(r" *\n *", "\n", part)
      out.append(part)
  text = "".join(out)
  text = re.sub(r"(?m)^\| ", "", text)  # leading cell separator of table rows
  text = re.sub(r"\n{3,}", "\n\n", text)
  return text.strip("\n")


def extract_page(html_text: str, page: str, min_chars: int) -> tuple[list[dict], int]:
  """Documents (id, title, text) of one page, and how many short sections were dropped."""
  p = SectionParser()
  p.feed(html_text)
  p.close()
  docs, short = [], 0
  for sec_id, path, text in p.sections:
    text = text.strip()
    if len(text) < min_chars:
      short += 1
      continue
    title = ": ".join(path)
    docs.append({"id": f"{page}#{sec_id}", "title": title, "text": text})
  return docs, short


def heldout_page(page: str, percent: int = HELDOUT_PERCENT) -> bool:
  return int(hashlib.sha256(page.encode("utf-8")).hexdigest()[:8], 16) % 100 < percent


def unpack(source: str, tmp: str) -> str:
  """The root of an extracted python3.11-doc package (a .deb is unpacked into tmp)."""
  if os.path.isdir(source):
    for root in (source, os.path.join(source, "..", "..", "..", "..")):
      if os.path.isdir(os.path.join(root, DOC_ROOT)):
        return root
    raise FileNotFoundError(f"{source} holds no {DOC_ROOT}; pass python3.11-doc_*.deb or the "
                            "directory `dpkg-deb -x` extracted it into.")
  if not os.path.exists(source):
    raise FileNotFoundError(f"{source} does not exist; run `apt-get download python3.11-doc` "
                            "and pass the .deb it writes.")
  subprocess.run(["dpkg-deb", "-x", source, tmp], check=True)
  return tmp


def extract(root: str, min_chars: int) -> tuple[list[dict], dict]:
  html_root = os.path.join(root, DOC_ROOT)
  docs, stats = [], {"pages": 0, "sections": 0, "dropped_short_sections": 0}
  for sub in SUBDIRS:
    for path in sorted(glob.glob(os.path.join(html_root, sub, "**", "*.html"), recursive=True)):
      page = os.path.relpath(path, html_root)[:-len(".html")]
      with open(path, encoding="utf-8") as f:
        page_docs, short = extract_page(f.read(), page, min_chars)
      stats["pages"] += 1
      stats["sections"] += len(page_docs) + short
      stats["dropped_short_sections"] += short
      docs.extend(page_docs)
  return docs, stats


def package_version(root: str) -> str:
  with gzip.open(os.path.join(root, CHANGELOG), "rt", encoding="utf-8") as f:
    return re.search(r"\((.+?)\)", f.readline()).group(1)


def write_license(root: str, out_dir: str):
  with open(os.path.join(root, COPYRIGHT), encoding="utf-8") as f:
    text = f.read()
  start = text.index("Python License\n==============")
  end = text.index("Licenses and Acknowledgements for Incorporated Software")
  header = (
      "The documents in train.jsonl.gz and heldout.jsonl.gz are excerpts of the Python 3.11.2\n"
      "documentation as packaged by Debian (python3.11-doc), Copyright (c) 2001-2023 Python\n"
      "Software Foundation; All Rights Reserved. Python's documentation is licensed under the PSF\n"
      "License Agreement below (code examples in it are also available under the Zero-Clause BSD\n"
      "license). spm_bpe_4096.model is a tokenizer trained on these excerpts.\n\n"
      "Summary of changes (clause 3 of the PSF License): the HTML pages were converted to plain\n"
      "text, split into one document per section (down to h3 headings), navigation and tables of\n"
      "contents removed, short sections, duplicates and over-long sections dropped, and the text\n"
      "cleaned (Unicode repair, long URLs removed, runs of blank lines shortened); see README.md\n"
      "and scripts/build_demo_corpus.py.\n\n"
      "The license text below is copied verbatim from the package's\n"
      "/usr/share/doc/python3.11-doc/copyright.\n\n")
  with open(os.path.join(out_dir, "LICENSE"), "w", encoding="utf-8") as f:
    f.write(header + text[start:end].rstrip() + "\n")


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--source", required=True, help="python3.11-doc .deb or its extracted directory")
  ap.add_argument("--out", default="data/demo_corpus")
  ap.add_argument("--vocab_size", type=int, default=4096)
  ap.add_argument("--max_tokens", type=int, default=clean.MAX_TOKENS)
  ap.add_argument("--min_chars", type=int, default=300)
  args = ap.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    root = unpack(args.source, tmp)
    docs, stats = extract(root, args.min_chars)
    write_license(root, args.out)
    version = package_version(root)
  print(f"extracted {len(docs)} sections from {stats['pages']} pages", flush=True)

  # Clean, then drop empties and exact duplicates (the length filter needs the tokenizer).
  docs, report1 = clean.filter_documents(docs, None)
  splits = {"train": [], "heldout": []}
  for d in docs:
    splits["heldout" if heldout_page(d["id"].split("#")[0]) else "train"].append(d)

  prefix = os.path.join(args.out, f"spm_bpe_{args.vocab_size}")
  model = tokenizer.train_sentencepiece((d["text"] for d in splits["train"]), prefix,
                                        args.vocab_size)
  os.remove(prefix + ".vocab")  # a human-readable listing; the .model is what is used
  vocab = tokenizer.load_vocabulary(model)
  count = clean.token_length_of(vocab)

  summary = {"source": f"Debian python3.11-doc {version} (Python 3.11 documentation, PSF License)",
             "package_version": version,
             "extraction": stats, "cleaning": report1, "min_chars": args.min_chars,
             "max_tokens": args.max_tokens, "splits": {}}
  too_long = {}
  for name, split in splits.items():
    kept, rep = clean.filter_documents(split, count, max_tokens=args.max_tokens)
    kept.sort(key=lambda d: d["id"])
    too_long[name] = rep["dropped"]["too_long"]
    path = os.path.join(args.out, f"{name}.jsonl.gz")
    fileio.write_jsonl(path, kept)
    tokens = sum(count(d["text"]) for d in kept)
    summary["splits"][name] = {
        "documents": len(kept), "pages": len({d["id"].split("#")[0] for d in kept}),
        "tokens": tokens, "characters": sum(len(d["text"]) for d in kept),
        "dropped_too_long": too_long[name], "bytes_gz": os.path.getsize(path)}
  summary["tokenizer"] = {"file": os.path.basename(model), "vocab_size": vocab.vocab_size,
                          "bytes": os.path.getsize(model)}
  write_readme(args.out, summary)
  print(json.dumps(summary, indent=2))
  return summary


def write_readme(out_dir: str, s: dict):
  tr, ho = s["splits"]["train"], s["splits"]["heldout"]
  ex, cl = s["extraction"], s["cleaning"]
  readme = f"""# Demo corpus: sections of the Python 3.11 documentation

Real English prose (with code examples) for the CPU demo, tests and benchmarks:
one document per section of the Python 3.11.2 manual, so many documents share a
topic from different angles (a module's overview, its classes, its how-to and
tutorial sections, the FAQ entries about it), which is what SBP's nearest
neighbour pairing looks for.

| split | file | documents | pages | tokens | characters | size |
|---|---|---:|---:|---:|---:|---:|
| train | train.jsonl.gz | {tr["documents"]:,} | {tr["pages"]:,} | {tr["tokens"]:,} | {tr["characters"]:,} | {tr["bytes_gz"] / 1e6:.2f} MB |
| held-out | heldout.jsonl.gz | {ho["documents"]:,} | {ho["pages"]:,} | {ho["tokens"]:,} | {ho["characters"]:,} | {ho["bytes_gz"] / 1e6:.2f} MB |

Tokens are counted with `spm_bpe_{s["tokenizer"]["vocab_size"]}.model`.

Each line is `{{"id": "<page>#<section anchor>", "title": "<page title>: <section path>", "text": ...}}`,
sorted by id. The held-out split holds every section of ~{HELDOUT_PERCENT}% of the pages (chosen by a
hash of the page path), so no page straddles the split.

## Source and license

Debian package `python3.11-doc` ({s["package_version"]}, bookworm): the HTML manual of Python
3.11. Python's documentation is under the PSF License Agreement (code examples are
also 0BSD), which permits redistribution and derived works provided the license and
copyright notice are kept and changes are summarised; `LICENSE` carries both, copied
from the package's copyright file. We chose it over the Linux man-pages (a patchwork of
per-page licenses) because one permissive license covers all of it and its sections
are natural prose with many related documents.

`spm_bpe_{s["tokenizer"]["vocab_size"]}.model`: SentencePiece BPE, vocab {s["tokenizer"]["vocab_size"]},
byte fallback, the special tokens of `sbp_jax/data/special_tokens.py` as single pieces,
pad=0 eos=1 unk=2, no bos, identity normalisation; trained on the train split after
cleaning and de-duplication (the 4,096-token filter needs the tokenizer, so it comes after).

## How it was built

```
apt-get download python3.11-doc
.venv/bin/python scripts/build_demo_corpus.py --source python3.11-doc_{s["package_version"]}_all.deb
```

The build is deterministic: the same package gives byte-identical files. Steps
(see the script's docstring): pages of {", ".join(d + "/" for d in SUBDIRS)} are split
into sections down to h3; navigation, tables of contents and permalinks are dropped and
code is kept verbatim; sections under {s["min_chars"]} characters are dropped; then
`sbp_jax.data.clean` repairs and filters the text.

Report of the last build:

| step | count |
|---|---:|
| pages read | {ex["pages"]:,} |
| sections found | {ex["sections"]:,} |
| dropped: shorter than {s["min_chars"]} characters | {ex["dropped_short_sections"]:,} |
| changed by cleaning (Unicode repair, long URLs, blank lines, trailing spaces) | {cl["modified_by_cleaning"]:,} |
| dropped: empty after cleaning | {cl["dropped"]["empty"]:,} |
| dropped: exact duplicates | {cl["dropped"]["duplicate"]:,} |
| dropped: over {s["max_tokens"]:,} tokens (train / held-out) | {tr["dropped_too_long"]:,} / {ho["dropped_too_long"]:,} |
| kept (train + held-out) | {tr["documents"] + ho["documents"]:,} |
"""
  with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as f:
    f.write(readme)


if __name__ == "__main__":
  main()
