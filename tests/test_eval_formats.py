"""Eval records, converters, exact-match normalisation, few-shot picks, Table 3.2 layout."""

import json
import os

import ml_collections
import pytest

from sbp_jax.eval import convert, report
from sbp_jax.eval import formats
from sbp_jax.eval.normalize import exact_match, normalize_answer
from sbp_jax.eval.records import RecordError, read_records

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "eval")
SUITE = [("heldout", "perplexity"), ("lambada", "lambada"), ("mmlu_test", "mmlu"),
         ("mmlu_dev", "mmlu"), ("arc_easy", "multiple_choice"),
         ("arc_challenge", "multiple_choice"), ("sciq", "multiple_choice"),
         ("winogrande", "winogrande"), ("triviaqa", "generative_qa"),
         ("webqs", "generative_qa")]


@pytest.mark.parametrize("name,fmt", SUITE)
def test_fixtures_are_valid_records(name, fmt):
  rows = read_records(os.path.join(FIX, f"{name}.jsonl"), fmt)
  assert len(rows) >= 4


@pytest.mark.parametrize("fmt,line,msg", [
    ("perplexity", '{"txt": "x"}', "non-empty string field 'text'"),
    ("lambada", '{"text": "oneword"}', "at least two words"),
    ("multiple_choice", '{"question": "q", "choices": ["a", "b"], "answer": 2}', "index in \\[0, 2\\)"),
    ("multiple_choice", '{"question": "q", "choices": ["a"], "answer": 0}', "at least 2"),
    ("mmlu", '{"question": "q", "choices": ["a", "b"], "answer": "A"}', "integer index"),
    ("winogrande", '{"sentence": "no blank", "options": ["a", "b"], "answer": 0}', "one '_'"),
    ("winogrande", '{"sentence": "ends _", "options": ["a", "b"], "answer": 0}', "text after"),
    ("winogrande", '{"sentence": "a _ b", "options": ["a", "b", "c"], "answer": 0}', "exactly two"),
    ("generative_qa", '{"question": "q", "answers": []}', "'answers'"),
    ("generative_qa", '[1, 2]', "not a JSON object"),
    ("perplexity", '{"text": "unterminated', "not valid JSON"),
])
def test_malformed_records_name_file_and_line(tmp_path, fmt, line, msg):
  good = {"perplexity": '{"text": "fine"}', "lambada": '{"text": "two words"}',
          "multiple_choice": '{"question": "q", "choices": ["a", "b"], "answer": 1}',
          "mmlu": '{"question": "q", "choices": ["a", "b"], "answer": 1}',
          "winogrande": '{"sentence": "a _ b", "options": ["x", "y"], "answer": 1}',
          "generative_qa": '{"question": "q", "answers": ["a"]}'}[fmt]
  p = tmp_path / "bad.jsonl"
  p.write_text(good + "\n\n" + line + "\n")
  with pytest.raises(RecordError, match=rf"bad\.jsonl:3: .*{msg}"):
    read_records(str(p), fmt)


def test_missing_files_and_unknown_format(tmp_path):
  with pytest.raises(FileNotFoundError, match="matches no file"):
    read_records(str(tmp_path / "none*.jsonl"), "perplexity")
  with pytest.raises(ValueError, match="not known"):
    read_records(os.path.join(FIX, "heldout.jsonl"), "cloze")


@pytest.mark.parametrize("pred,refs,hit", [
    ("The Indian Ocean", ["Indian Ocean"], True),
    ("indian ocean.", ["Indian Ocean"], True),
    ("  Rome ", ["Roma", "Rome"], True),
    ("an apple", ["Apple"], True),
    ("Herman  Melville!", ["Herman Melville"], True),
    ("Café", ["cafe\u0301"], True),            # composed vs decomposed accent
    ("U.S.", ["u s"], True),                   # punctuation becomes a space
    ("“Jaws”", ["Jaws"], True),
    ("the_beatles", ["Beatles"], True),
    ("Rome, Italy", ["Rome"], False),
    ("eight legs", ["8", "eight"], False),
    ("", ["a"], False),                       # "a" normalises to "", but empty never counts
    ("theory", ["ory"], False),               # articles only as whole words
])
def test_exact_match_normalisation(pred, refs, hit):
  assert exact_match(pred, refs) is hit


def test_normalize_answer_table():
  assert normalize_answer("  The  Quick, brown FOX!  ") == "quick brown fox"
  assert normalize_answer("A tale of an owl") == "tale of owl"


def test_split_last_word_and_prompts():
  assert formats.split_last_word("waited for the train  ") == ("waited for the", " train")
  assert formats.mc_prompt({"question": " Why? ", "context": "Because."}) == \
      "Because.\nQuestion: Why?\nAnswer:"
  r = {"question": "Q?", "choices": ["x", "y"], "answer": 1}
  assert formats.mmlu_item(r, True) == "Q?\nA. x\nB. y\nAnswer: B"
  assert formats.mmlu_header("high_school_chemistry").startswith(
      "Multiple-choice questions on high school chemistry")
  assert formats.qa_prompt({"question": "Q?", "answers": ["a1", "a2"]}, True) == "Question: Q?\nAnswer: a1"
  assert formats.first_line(" Rome\nQuestion: next") == "Rome"


def test_fewshot_picks_are_deterministic_and_exclude_self():
  pool = [{"i": i, "subject": "a" if i < 6 else "b"} for i in range(10)]
  s1 = formats.pick_shots(pool, 3, index=2, seed=0, exclude_self=True)
  assert s1 == formats.pick_shots(pool, 3, index=2, seed=0, exclude_self=True)
  assert len(s1) == 3 and all(s["i"] != 2 for s in s1)
  assert s1 != formats.pick_shots(pool, 3, index=2, seed=1, exclude_self=True)
  same = formats.pick_shots(pool, 5, index=7, seed=0, exclude_self=True, group="b")
  assert [s["subject"] for s in same[:3]] == ["b"] * 3 and all(s["i"] != 7 for s in same)
  assert formats.pick_shots(pool, 0, 0, 0, True) == []


def _conv(tmp_path, name, *inputs, **kw):
  out = str(tmp_path / f"{name}.jsonl")
  n = convert.convert(name, [os.path.join(FIX, "release", i) for i in inputs], out, **kw)
  rows = [json.loads(l) for l in open(out)]
  assert len(rows) == n
  return read_records(out, convert.CONVERTERS[name][0])  # valid records of the format


def test_converters_from_release_formats(tmp_path):
  arc = _conv(tmp_path, "arc", "arc.jsonl")
  assert [(r["choices"][r["answer"]], r["id"]) for r in arc] == [("solid", "r1"), ("ear", "r2")]
  sciq = _conv(tmp_path, "sciq", "sciq.json")
  assert sciq[0]["choices"][sciq[0]["answer"]] == "chlorophyll" and "chlorophyll" in sciq[0]["context"]
  assert "context" not in sciq[1]  # empty support is dropped
  wg = _conv(tmp_path, "winogrande", "winogrande.jsonl")
  assert [(r["options"], r["answer"]) for r in wg] == [(["the cup", "the floor"], 0), (["Maria", "Jo"], 1)]
  lam = _conv(tmp_path, "lambada", "lambada.txt")
  assert [r["text"] for r in lam] == ["He opened the window to let in some fresh air",
                                      "She poured the milk into a tall glass"]
  mmlu = _conv(tmp_path, "mmlu", "mmlu")
  assert mmlu[1] == {"question": "Which of these is a star, not a planet?",
                     "choices": ["Sirius", "Mars", "Neptune", "Pluto"], "answer": 0,
                     "subject": "astronomy"}
  tqa = _conv(tmp_path, "triviaqa", "triviaqa.json")
  assert tqa[0]["answers"] == ["Carbon dioxide", "CO2", "carbonic anhydride"]
  wq = _conv(tmp_path, "webqs", "webqs.json")
  assert [r["answers"] for r in wq] == [["Cape Town", "Pretoria"], ['Say "hi"']]
  txt = _conv(tmp_path, "text", "owt2.jsonl")
  assert [r["text"] for r in txt] == ["First web page text.", "Second page."]


def test_converter_errors_name_the_entry(tmp_path):
  bad = tmp_path / "arc.jsonl"
  bad.write_text('{"question": {"stem": "q", "choices": [{"text": "a", "label": "A"}, '
                 '{"text": "b", "label": "B"}]}, "answerKey": "A"}\n{"question": {"stem": "q"}, "answerKey": "A"}\n')
  with pytest.raises(RecordError, match=r"arc\.jsonl:2: not an ARC question"):
    convert.convert("arc", [str(bad)], str(tmp_path / "o.jsonl"))
  wg = tmp_path / "wg.jsonl"
  wg.write_text('{"sentence": "a _ b", "option1": "x", "option2": "y", "answer": ""}\n')
  with pytest.raises(RecordError, match=r"wg\.jsonl:1: not a labelled Winogrande"):
    convert.convert("winogrande", [str(wg)], str(tmp_path / "o.jsonl"))
  csvf = tmp_path / "x_test.csv"
  csvf.write_text("q,a,b,c,d,E\n")
  with pytest.raises(RecordError, match=r"x_test\.csv:1: an MMLU row has 6 columns"):
    convert.convert("mmlu", [str(csvf)], str(tmp_path / "o.jsonl"))
  one = tmp_path / "one.jsonl"
  one.write_text('{"question": {"stem": "q", "choices": [{"text": "a", "label": "A"}]}, '
                 '"answerKey": "A"}\n')
  with pytest.raises(RecordError, match=r"one\.jsonl: converted record 0: .*at least 2"):
    convert.convert("arc", [str(one)], str(tmp_path / "o.jsonl"))
  assert not os.path.exists(tmp_path / "o.jsonl")  # nothing half-written under the final name


def _results(primary_values: dict) -> dict:
  """A results.json with the given {task: (kind, value)}; accuracies in percent."""
  out = {}
  for name, (kind, v) in primary_values.items():
    metric = "perplexity" if kind == "perplexity" else "acc"
    out[name] = dict(format="x", kind=kind, primary=metric, label=name,
                     metrics={metric: v if kind == "perplexity" else v / 100})
  return {"tasks": out}


def test_table_3_2_layout_reproduces_the_thesis_200b_column():
  """The 200B-scale numbers of thesis Table 3.2 give its average row and the
  42% share of the oracle's gain."""
  ppl = {"OpenWebText2": (5.74, -0.53, -1.02), "LAMBADA": (6.87, -0.85, -1.86),
         "MMLU": (3.83, -0.36, -0.51)}
  acc = {"ARC-Challenge": (35.32, 1.28, 2.82), "ARC-Easy": (68.94, 2.65, 4.29),
         "SciQ": (90.50, 1.00, 2.40), "Winogrande": (60.14, 1.90, 5.53),
         "TriviaQA": (22.51, 3.36, 7.37), "WebQS": (8.56, 3.74, 10.83)}
  runs = []
  for col, label in enumerate(["Baseline", "SBP", "Oracle"]):
    vals = {}
    for block, kind in ((ppl, "perplexity"), (acc, "accuracy")):
      for k, v in block.items():
        vals[k] = (kind, v[0] + (v[col] if col else 0.0))
    runs.append((label, _results(vals)))
  t = report.combine(runs, baseline="Baseline", oracle="Oracle")
  avg = t["average_accuracy"]
  assert avg["Baseline"] == pytest.approx(47.66, abs=0.005)
  assert avg["SBP"] - avg["Baseline"] == pytest.approx(2.32, abs=0.005)
  assert avg["Oracle"] - avg["Baseline"] == pytest.approx(5.54, abs=0.005)
  assert t["oracle_share"]["SBP"] == pytest.approx(13.93 / 33.24)
  text = report.format_table(t)
  lines = text.splitlines()
  assert lines[0].split() == ["Benchmark", "Baseline", "SBP", "Oracle"]
  assert lines[2].split() == ["OpenWebText2", "5.74", "-0.53", "-1.02"]
  assert [l.split()[0] for l in lines[1:]].index("--") == 0  # perplexity block first
  assert "Average QA accuracy" in text and lines[-2].split()[-3:] == ["47.66", "+2.32", "+5.54"]
  assert lines[-1].split()[-1] == "42%"


def test_table_rejects_mismatched_runs():
  a = _results({"x": ("accuracy", 50.0)})
  b = _results({"y": ("accuracy", 50.0)})
  with pytest.raises(ValueError, match="run 'B' has no results for task"):
    report.combine([("A", a), ("B", b)], baseline="A")
  with pytest.raises(ValueError, match="table.baseline='C'"):
    report.combine([("A", a)], baseline="C")


SPM = os.path.join(os.path.dirname(FIX), "..", "..", "data", "demo_corpus", "spm_bpe_4096.model")


@pytest.mark.slow  # the SentencePiece adapter's module imports seqio (TensorFlow)
@pytest.mark.skipif(not os.path.exists(SPM), reason="needs the demo corpus tokenizer")
def test_context_continuation_split_with_sentencepiece():
  from sbp_jax.generate.text_codec import make_tokenizer  # pylint: disable=g-import-not-at-top
  tok = make_tokenizer(ml_collections.ConfigDict({"kind": "sentencepiece", "path": SPM}))
  ctx = formats.Context(scorer=None, tokenizer=tok, prefix=(1,))
  for context, cont in [("Question: Which city is the capital of France?\nAnswer:", " Paris"),
                        ("The function returns a", " list of strings"),
                        ("The ox chased the yak because the ox", " was angry.")]:
    r = ctx.pair(context, cont)
    body = list(r.tokens[1:])
    assert r.tokens[0] == 1  # the document-start prefix
    scored = body[-r.n_scored:]
    # The split follows the whole string's encoding and gives back exactly the texts.
    assert body == tok.encode(context + cont)
    assert tok.decode(body[:-r.n_scored]) == context and tok.decode(scored).strip() == cont.strip()
