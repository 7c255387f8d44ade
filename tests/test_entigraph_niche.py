"""The niche corpus and its questions, the entity filter, bad-input errors, and the CPT
study's pure pieces (random subsamples, token matching, Wilson intervals, the
mixture-of-exponential fit and plot, run identities)."""

import json

import ml_collections
import numpy as np
import pytest

from configs import entigraph_smollm2, entigraph_smollm2_cpt
from sbp_jax import main, runs
from sbp_jax.entigraph import cpt_study, niche_corpus, scaling_fit, synth_corpus
from sbp_jax.entigraph.articles import Document, load_documents, load_questions
from sbp_jax.entigraph.entity_filter import filter_entities
from sbp_jax.errors import InputError

SOURCE = "data/demo_corpus/train.jsonl.gz"

TOOL = Document("tool#cli", "tool — Does things: Command-Line Interface", "\n\n".join([
    "Command-Line Interface", "python -m tool [-n N] [-x]", "-n N, --number=N",
    "How many times to run the job.", "-x", "Exclude hidden files from the listing.",
    "-h, --help", "Print a short usage message and exit.", "New in version 3.5."]))
OTHER = Document("other#opts", "other — Other things: Options", "\n\n".join([
    "-q", "Quiet output for scripts that parse it.", "-z LEVEL", "Compress at this level.",
    "-k PATTERN", "Only run tests matching the pattern.", "-w", "Wait for the lock first."]))
THIRD = Document("third#opts", "third — More things: Options", "\n\n".join([
    "-a", "Archive every file found.", "-b SIZE", "Use blocks of this size."]))
DOCS = (TOOL, OTHER, THIRD)


@pytest.fixture(scope="module")
def built():
  return niche_corpus.build(SOURCE, 4, 0, 0, "other_documents")


def test_option_facts_follow_the_rule_and_skip_common_flags():
  facts = niche_corpus.option_facts(TOOL)
  assert [(f.flag, f.description) for f in facts] == [
      ("-n", "How many times to run the job."), ("-x", "Exclude hidden files from the listing.")]
  assert niche_corpus.doc_options(TOOL) == {"-n", "--number", "-x", "-h", "--help"}
  assert niche_corpus.shape("--with-lto") == (2, "with") and niche_corpus.shape("-j") == (1, "")
  # A sentence that opens with a flag is prose, not an option line (zipapp's manual has two).
  assert niche_corpus.option_flag("--main cannot be specified when copying an archive.") is None
  assert niche_corpus.option_flag("-o writes the results to a file instead of stdout") is None
  assert niche_corpus.option_flag("-c <tarfile> <source1> ... <sourceN>") == "-c"
  assert niche_corpus.option_flag("--with-tzpath=<list of absolute paths>") == "--with-tzpath"
  assert niche_corpus.option_flag("-X importtime") == "-X"
  assert niche_corpus.option_flag("--with-openssl-rpath=[no|auto|DIR]") == "--with-openssl-rpath"


def test_shipped_corpus_gives_over_100_checked_questions(built):
  docs, rows = built
  assert len(rows) >= 100 and 10 <= len(docs) <= 30
  assert (docs, rows) == niche_corpus.build(SOURCE, 4, 0, 0, "other_documents")  # reproducible
  by_id, shapes = {d.id: d for d in docs}, []
  for r in rows:
    gold = r["choices"]["ABCD".index(r["answer"])]
    assert len(set(r["choices"])) == 4 and gold == r["flag"]
    text = by_id[r["doc_id"]].text
    assert gold in text and r["description"][:40] in text.replace("\n", " ")
    own = niche_corpus.doc_options(by_id[r["doc_id"]])
    assert not (set(r["choices"]) - {gold}) & own  # no distractor is an option of the doc
    assert all(niche_corpus.shape(c)[0] == niche_corpus.shape(gold)[0] for c in r["choices"])
    shapes.append(all(niche_corpus.shape(c) == niche_corpus.shape(gold) for c in r["choices"]))
    assert gold not in niche_corpus.GENERIC_FLAGS
  assert {r["answer"] for r in rows} == set("ABCD")
  assert sum(shapes) >= 0.9 * len(rows)  # nearly all share the gold flag's family too
  assert all(r["author"] == niche_corpus.AUTHOR for r in rows)
  assert not any(r["description"].startswith("New in version") for r in rows)


def test_same_document_distractors_are_the_documents_other_facts(built):
  docs, rows = niche_corpus.build(SOURCE, 4, 0, 0)  # the default
  assert len(rows) == len(built[1]) >= 100
  by_id = {d.id: d for d in docs}
  for r in rows:
    facts = {f.flag: f.description for f in niche_corpus.option_facts(by_id[r["doc_id"]])}
    assert facts[r["flag"]] == r["description"] and set(r["choices"]) <= set(facts)
    assert len(set(facts[c] for c in r["choices"])) == 4  # four different descriptions
  assert {r["answer"] for r in rows} == set("ABCD")
  with pytest.raises(InputError, match=r"niche\.min_facts=3.*niche\.distractors=other_documents"):
    niche_corpus.build(SOURCE, 3, 0, 0)
  with pytest.raises(InputError, match=r"niche\.distractors='nearby'"):
    niche_corpus.build(SOURCE, 4, 0, 0, "nearby")


def test_verify_rejects_a_question_the_text_does_not_answer():
  rows = niche_corpus.make_questions(DOCS, {d.id: niche_corpus.option_facts(d) for d in DOCS},
                                     seed=1, distractors="other_documents")
  assert len(rows) == 2 + 3 + 2 and rows[0]["doc_id"] == TOOL.id
  for r in rows:
    niche_corpus.verify({d.id: d for d in DOCS}[r["doc_id"]], r)
  bad = dict(rows[0], description="Something the document never says.")
  with pytest.raises(InputError, match="no option paragraph"):
    niche_corpus.verify(TOOL, bad)
  clash = dict(rows[0])
  clash["choices"] = list(clash["choices"])
  wrong_slot = next(i for i, c in enumerate(clash["choices"]) if c != rows[0]["flag"])
  assert rows[0]["flag"] == "-n"
  for alias in ("--number", "-h"):  # another spelling of the gold flag; an undescribed option
    clash["choices"][wrong_slot] = alias
    with pytest.raises(InputError, match="distractors"):
      niche_corpus.verify(TOOL, clash)
  clash["choices"][wrong_slot] = "-x"  # another fact of the document: a fair distractor
  niche_corpus.verify(TOOL, clash)
  # ... unless it is described the same way, or its option line names the gold flag.
  twin = Document(TOOL.id, TOOL.title, TOOL.text.replace(
      "Exclude hidden files from the listing.", "How many times to run the job."))
  with pytest.raises(InputError, match=r"distractors \['-x'\]"):
    niche_corpus.verify(twin, clash)
  alias = Document(TOOL.id, TOOL.title, TOOL.text.replace("\n\n-x\n\n", "\n\n-x, -n\n\n"))
  with pytest.raises(InputError, match=r"distractors \['-x'\]"):
    niche_corpus.verify(alias, clash)


def test_written_files_load_with_the_qa_loaders(tmp_path):
  sec = ml_collections.ConfigDict(dict(source=SOURCE, min_facts=4, max_docs=3, seed=0))
  info = niche_corpus.write(sec, str(tmp_path))
  assert "PSF" in info["license"] and info["documents"] == 3
  qs = load_questions(str(tmp_path / "questions.jsonl"))
  docs = load_documents(str(tmp_path / "documents.jsonl"))
  assert len(qs) == info["questions"] and {q.doc_id for q in qs} == {d.id for d in docs}


def test_qa_file_whose_answer_is_not_a_choice_names_file_and_fix(tmp_path):
  row = dict(id="q", doc_id="d", title="T", author="A", question="Q?",
             choices=["-a", "-b", "-c", "-d"], answer="-b")
  p = tmp_path / "qs.jsonl"
  p.write_text(json.dumps(row) + "\n")
  assert load_questions(str(p))[0].answer == 1  # the text of a choice is accepted
  p.write_text(json.dumps(dict(row, answer="-e")) + "\n")
  with pytest.raises(InputError, match=r"qs\.jsonl:1: 'answer'='-e' is not among its choices.*"
                                       r"letter A-D or the exact text"):
    load_questions(str(p))


def test_corpus_without_documents_names_file_and_fix(tmp_path, capsys):
  p = tmp_path / "empty.jsonl"
  p.write_text("")
  with pytest.raises(InputError, match=r"empty\.jsonl: no documents.*entigraph\.documents"):
    load_documents(str(p))
  # Through the CLI: one line naming the file, no traceback.
  rc = main.cli(["x", "--config=configs/entigraph_generate.py",
                 f"--config.entigraph.documents={p}", f"--workdir={tmp_path / 'w'}"])
  err = capsys.readouterr().err
  assert rc != 0 and "empty.jsonl: no documents" in err and "Traceback" not in err


def test_entity_filter_drops_headings_versions_and_names_not_in_the_text():
  text = TOOL.text + "\n\nThe tool uses the frobnicate module and the Zeta scheduler."
  kept, dropped = filter_entities(
      ["Command-Line Interface", "tool", "3.5", "New in version 3.5", "frobnicate module",
       "Zeta scheduler", "zeta scheduler", "Guido van Rossum", "--number", "1", "(2)",
       "a very long sentence that is certainly not the name of any one thing"], TOOL.title, text)
  assert kept == ["frobnicate module", "Zeta scheduler", "--number"]
  assert dropped == {"heading": 2, "version": 2, "repeat": 1, "not_in_text": 1, "length": 1,
                     "no_letter": 2}



def test_entity_filter_drops_option_placeholders_keeps_case_distinct_flags_and_calls():
  text = "\n\n".join(["-b", "Warn about bytes.", "-B", "Do not write .pyc files.",
                      "--with-openssl=DIR", "Use the OpenSSL found in DIR.", "-n N, --number=N",
                      "How many runs.", "Results go through parse() and json.dumps()."])
  assert niche_corpus.option_arguments("--with-openssl-rpath=[no|auto|DIR]") == {
      "no", "auto", "DIR"}
  assert niche_corpus.option_arguments("-o <file>, --output=<file>") == {"file"}
  assert niche_corpus.option_arguments("Use the OpenSSL found in DIR.") == set()
  kept, dropped = filter_entities(["-b", "-B", "DIR", "N", "OpenSSL", "parse()", "json.dumps()",
                                   "'-b'"], "tool: Options", text)
  assert kept == ["-b", "-B", "OpenSSL", "parse()", "json.dumps()"]
  assert dropped == {"placeholder": 2, "repeat": 1}
  # Spellings of one option are each in the text; a run-on list of names is not.
  kept, dropped = filter_entities(["-n, --number", "OpenSSL, DIR"], "tool: Options", text)
  assert kept == ["-n, --number"] and dropped == {"not_in_text": 1}

def test_subsample_is_random_not_a_prefix_and_hits_the_share():
  recs = [dict(doc_id=f"d{i // 10}", num_tokens=10, i=i) for i in range(100)]
  sub = cpt_study.subsample(recs, 0.25, seed=0)
  assert sum(r["num_tokens"] for r in sub) == 250
  assert [r["i"] for r in sub] != list(range(25))  # not the file-order prefix
  assert len({r["doc_id"] for r in sub}) >= 7  # later documents are not starved
  assert sub == cpt_study.subsample(recs, 0.25, seed=0)
  assert {r["i"] for r in cpt_study.subsample(recs, 1.0, 3)} == set(range(100))
  with pytest.raises(InputError, match="scaling_fractions"):
    cpt_study.subsample(recs, 0.0, 0)


def test_arm_plan_matches_rephrase_tokens_to_entigraph():
  a = entigraph_smollm2_cpt.get_config().arms
  p = cpt_study.arm_plan(eg_tokens=30_000, rp_tokens=10_000, raw_tokens=5_000, a=a)
  assert p["raw_cpt"] == dict(corpus="raw", epochs=4.0)
  assert p["entigraph_cpt"]["epochs"] == 2.0
  assert p["rephrase_cpt"]["epochs"] * 10_000 == pytest.approx(2.0 * 30_000)
  assert {"entigraph_0.25", "entigraph_0.5"} <= set(p)


def test_wilson_interval():
  lo, hi = cpt_study.wilson(30, 120)
  assert lo < 0.25 < hi and hi - lo == pytest.approx(0.153, abs=0.003)
  assert cpt_study.wilson(0, 10)[0] == 0.0


def test_mixture_of_exponential_fit_recovers_a_curve_and_plots(tmp_path):
  x = np.array([0, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8])
  y = scaling_fit.curve(x / 1e6, 0.6, 0.2, 0.5, 0.15, 0.98)
  f = scaling_fit.fit(x, y)
  assert f["terms"] == 3 and f["rmse"] < 0.01
  np.testing.assert_allclose(scaling_fit.predict(f, x), y, atol=0.02)
  f4 = scaling_fit.fit(x[:4], y[:4])  # 4 points determine one term
  assert f4["terms"] == 1 and 0 < f4["r"][0] < 1
  png = tmp_path / "s.png"
  pts = [[int(a), float(b)] for a, b in zip(x[:4], y[:4])]
  scaling_fit.plot(pts, f4, str(png), {"base": 0.3})
  assert png.read_bytes()[:4] == b"\x89PNG"
  width = lambda p: int.from_bytes(p.read_bytes()[16:20], "big")  # the PNG header's width
  both = tmp_path / "both.png"
  scaling_fit.plot(pts, f4, str(both), {"base": 0.3}, loglik=(pts, f4, {"base": 0.4}))
  assert width(both) == 2 * width(png)  # a second panel for log-likelihood


def test_fit_bends_within_a_sweep_of_thousands_of_tokens():
  # A CPU sweep: 5K-19K tokens. Counted in millions, r^x stays above 0.5 for any r >= 1e-12,
  # so a curve that levels off inside the sweep could not be followed.
  x = np.array([0, 4803, 9671, 19165])
  y = scaling_fit.curve(x / 1e3, 0.53, 0.15, 0.8)
  f = scaling_fit.fit(x, y)
  assert f["x_unit"] == "thousand tokens" and f["x_scale"] == 1e3
  assert f["rmse"] < 1e-3 and f["r"][0] == pytest.approx(0.8, abs=0.01)
  np.testing.assert_allclose(scaling_fit.predict(f, x), y, atol=1e-3)
  assert scaling_fit.unit(3e7) == (1e6, "million tokens")  # the thesis's unit from 1M up
  assert scaling_fit.unit(0) == (1.0, "tokens")
  old = dict(f, x_scale=None)  # a fit written before x_scale was recorded counted millions
  del old["x_scale"]
  np.testing.assert_allclose(scaling_fit.predict(old, x * 1e3), y, atol=1e-3)
  with pytest.raises(ValueError, match="finite token counts >= 0"):
    scaling_fit.fit([-5, 10, 20], [0.1, 0.2, 0.3])


def test_study_config_is_a_real_job_and_refuses_a_short_sweep():
  for size in entigraph_smollm2_cpt.SIZES:
    c = entigraph_smollm2_cpt.get_config(size)
    assert c.job in main.JOBS and c.arms.replay_rate == 0.1
    assert c.train.schedule == "cosine" and c.train.warmup_frac == 0.05
    assert c.tokenizer.kind == "hf" and c.entigraph.entity_filter
    cpt_study.check(c)
  c.arms.scaling_fractions = (0.5,)
  with pytest.raises(InputError, match="at least 3"):
    cpt_study.check(c)


def test_cpu_size_asks_over_100_questions_with_replies_that_parse(built):
  c = entigraph_smollm2_cpt.get_config("cpu")
  n = c.niche
  assert (n.source, n.min_facts, n.seed) == (SOURCE, 4, 0) and n.max_docs == 0
  assert n.distractors == "same_document"
  assert len(built[1]) >= 100 and c.qa.max_questions == 0  # as many as the fixture's
  # Answer-only replies are a few tokens; the full size keeps the thesis's chain of thought.
  assert not c.qa.reasoning and c.qa.max_new_tokens >= 3 and c.qa.k >= 2
  full = entigraph_smollm2_cpt.get_config("full")
  assert full.qa.reasoning
  # An accelerator writes about every pair of all entities, as the thesis.
  assert full.entigraph.max_pairs == 0 and full.entigraph.max_entities == 0


def test_entigraph_generation_claims_a_run_identity(tmp_path):
  c = entigraph_smollm2.get_config()
  c.entigraph.documents = SOURCE
  synth_corpus.claim(c, str(tmp_path))
  (tmp_path / "manifest.json").write_text("{}")
  c.entigraph.max_docs = 9  # how far a run goes: a resume may change it
  synth_corpus.claim(c, str(tmp_path))
  c.entigraph.max_entities = 7
  with pytest.raises(InputError, match=r"entigraph.max_entities: 4 -> 7"):
    synth_corpus.claim(c, str(tmp_path))
  with runs.overwriting(True):
    synth_corpus.claim(c, str(tmp_path))
  assert not (tmp_path / "manifest.json").exists()
