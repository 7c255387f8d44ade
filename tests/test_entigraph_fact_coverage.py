"""Which option facts a corpus states (fact_coverage.py) and the study report's use of it."""

import json

from sbp_jax.entigraph import cpt_study, fact_coverage, niche_corpus
from sbp_jax.entigraph.articles import Document, Question

TOOL = Document("tool#cli", "tool: Command-Line Interface", "\n\n".join([
    "-n N, --number=N", "How many times to run the job.", "-x",
    "Exclude hidden files from the listing.", "-r", "Repeat the whole timing run twice."]))
N, X, R = niche_corpus.option_facts(TOOL)


def _q(qid, gold, choices=("-n", "-x", "-r", "-k")):
  return Question(qid, TOOL.id, TOOL.title, "", "which option ...?", choices,
                  choices.index(gold))


def test_statement_reads_direction_and_needs_the_flag_and_its_description():
  # The source layout: option line, then its description in the next paragraph.
  assert fact_coverage.statement(N, TOOL.text) == "forward"
  assert fact_coverage.statement(X, 'In "tool", -x excludes hidden files from the listing.'
                                 ) == "forward"
  assert fact_coverage.statement(
      X, "To leave hidden files out of the listing, exclude them with -x.") == "reversed"
  # A small writer's invention names the flag but not what it does.
  assert fact_coverage.statement(X, "-x stands for Extended Mode, a binary compilation.") is None
  # The description without its flag, or with a longer flag that starts the same way.
  assert fact_coverage.statement(X, "Hidden files are excluded from the listing.") is None
  assert fact_coverage.statement(X, "-xz excludes hidden files from the listing.") is None
  # Half of the content words are enough ("times", "run", "job" of "how many times ...").
  assert fact_coverage.statement(N, "Pass -n to run the job more times.") == "forward"
  assert fact_coverage.statement(N, "Pass -n for more.\nUnrelated line about the job.") is None


def test_coverage_counts_question_facts_per_document_and_skips_other_questions():
  other = Document("other#x", "other", "-x\n\nSomething else entirely happens here.")
  records = [dict(doc_id=TOOL.id, text="With -n you run the job many times."),
             dict(doc_id=TOOL.id, text="Hidden files stay out of the listing with -x."),
             # right words, wrong document: the question is about TOOL's -r
             dict(doc_id=other.id, text="-r repeats the whole timing run twice.")]
  qs = [_q("n", "-n"), _q("x", "-x"), _q("r", "-r"),
        Question("free", TOOL.id, TOOL.title, "", "?", ("a", "b", "c", "d"), 0)]
  c = fact_coverage.coverage([TOOL, other], qs, records)
  assert c == dict(stated=["n", "x"], reversed=["x"])
  raw = [dict(doc_id=TOOL.id, text=f"{TOOL.title}\n\n{TOOL.text}")]
  assert fact_coverage.coverage([TOOL], qs, raw) == dict(stated=["n", "x", "r"], reversed=[])


def test_facts_stated_splits_each_arms_accuracy_by_what_entigraph_states(tmp_path):
  qs = [_q("n", "-n"), _q("x", "-x"), _q("r", "-r")]
  recs = dict(raw=[dict(doc_id=TOOL.id, text=TOOL.text)],
              entigraph=[dict(doc_id=TOOL.id, text="To exclude hidden files from the "
                              "listing, pass -x.")],
              rephrase=[])
  right = {"base": {"n"}, "raw_cpt": {"n", "r"}, "rephrase_cpt": set(),
           "entigraph_cpt": {"x", "n"}}
  for arm, ok in right.items():
    (tmp_path / f"{arm}_loglik.jsonl").write_text("".join(
        json.dumps(dict(id=q.id, correct=q.id in ok)) + "\n" for q in qs))
  out = cpt_study.facts_stated([TOOL], qs, recs, str(tmp_path))
  assert out["stated"] == dict(raw_cpt=3, entigraph_cpt=1, rephrase_cpt=0)
  assert out["reversed"] == dict(raw_cpt=0, entigraph_cpt=1, rephrase_cpt=0)
  split = out["loglik_by_entigraph_stated"]
  assert split["stated"] == dict(n=1, accuracy=dict(base=0.0, raw_cpt=0.0, rephrase_cpt=0.0,
                                                    entigraph_cpt=1.0))
  assert split["not_stated"] == dict(n=2, accuracy=dict(base=0.5, raw_cpt=1.0,
                                                        rephrase_cpt=0.0, entigraph_cpt=0.5))
  # Questions that are no option facts (another question set): nothing to report.
  free = [Question("f", TOOL.id, TOOL.title, "", "?", ("a", "b", "c", "d"), 1)]
  assert cpt_study.facts_stated([TOOL], free, recs, str(tmp_path)) is None
