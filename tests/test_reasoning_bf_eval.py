"""The budget-forcing sweep on a tiny random model: every setting and every n
yields a row, budgets are obeyed, files and plot are written, re-runs resume."""

import csv
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import s1_budget_eval
from configs.model import presets
from sbp_jax.generate.sampler import Sampler
from sbp_jax.generate.text_codec import ByteTokenizer
from sbp_jax.model import ModelConfig, Transformer
from sbp_jax.reasoning import bf_eval


@pytest.fixture(scope="module")
def sampler():
  cfg = ModelConfig.from_dict(presets.get("tiny", dtype="float32", remat_policy="none"))
  init = jax.jit(lambda r: Transformer(cfg).init(r, jnp.zeros((1, 8), jnp.int32))["params"])
  return Sampler(cfg, nn.meta.unbox(init(jax.random.key(2))), tokenizer=ByteTokenizer())


def _config(tmp_path):
  c = s1_budget_eval.get_config()
  q = tmp_path / "q.jsonl"
  q.write_text("".join(json.dumps({"question": f"{a}+{b}", "answer": str(a + b)}) + "\n"
                       for a, b in [(1, 2), (3, 4), (5, 6)]))
  e = c.budget_eval
  e.questions = str(q)
  e.thinking_cap = 12
  e.max_answer_tokens = 3
  e.batch_size = 4
  e.sequential.settings = ("max=3", "max=7", "none", "wait=2")
  e.parallel.ns = (1, 2, 4)
  e.parallel.questions_per_part = 2
  return c


def test_sweep_rows_budgets_and_outputs(tmp_path, sampler):
  c = _config(tmp_path)
  out = str(tmp_path / "out")
  calls = []

  def make():
    calls.append(1)
    return sampler

  res = bf_eval.evaluate(make, c, out)
  seq, par = res["sequential"], res["parallel"]
  assert [r["setting"] for r in seq] == list(c.budget_eval.sequential.settings)
  assert [r["n"] for r in par] == [1, 2, 4]
  for r in seq:
    assert r["n"] == 3 and 0 <= r["accuracy"] <= 1
    assert r["max_thinking_tokens"] <= (r["max_thinking"] or c.budget_eval.thinking_cap)
  for spec, cap in (("max3", 3), ("max7", 7), ("none", 12), ("wait2", 12)):
    rows = [json.loads(line) for line in open(os.path.join(out, "sequential", spec + ".jsonl"))]
    assert len(rows) == 3 and all(r["thinking_tokens"] <= cap for r in rows)
    assert all(r["correct"] == (r["pred"] == str(int(r["gold"]))) for r in rows)
  # Parallel: thinking tokens add up over the n samples that vote.
  samples = []
  for name in sorted(os.listdir(os.path.join(out, "parallel"))):
    samples += [json.loads(line) for line in open(os.path.join(out, "parallel", name))]
  assert len(samples) == 3 and all(len(s["preds"]) == 4 for s in samples)
  for r in par:
    want = sum(sum(s["thinking_tokens"][:r["n"]]) for s in samples) / 3
    assert r["mean_thinking_tokens"] == pytest.approx(want)
  # Temperature 1 draws differ between samples of one question.
  # (A random model never completes the multi-token end-of-thinking delimiter, so every sample
  # thinks to the cap; the answers after the forced delimiter are where the draws show.)
  assert all(len(s["answers"]) == 4 for s in samples)
  assert any(len(set(s["answers"])) > 1 for s in samples)
  with open(os.path.join(out, "sequential.csv")) as f:
    assert len(list(csv.DictReader(f))) == 4
  with open(os.path.join(out, "parallel.csv")) as f:
    assert [int(r["n"]) for r in csv.DictReader(f)] == [1, 2, 4]
  assert os.path.getsize(os.path.join(out, "scaling.png")) > 1000
  # A re-run finds every file and never builds a sampler.
  calls.clear()
  assert bf_eval.evaluate(make, c, out) == res and not calls
  text = bf_eval.format_tables(seq, par)
  assert "Sequential" in text and "Parallel" in text and "wait=2" in text


def test_vote_table_is_exact():
  samples = [dict(id="a", gold="4", preds=["4", "5", "5", "4"], thinking_tokens=[1, 2, 3, 4]),
             dict(id="b", gold="7", preds=[None, "7", "7", "1"], thinking_tokens=[5, 5, 5, 5])]
  t = bf_eval.vote_table(samples, [1, 2, 4])
  # n=1: a right, b None; n=2: a tie 4/5 -> 4 (first), b 7; n=4: a tie -> 4, b 7.
  assert [r["accuracy"] for r in t] == [0.5, 1.0, 1.0]
  assert [r["mean_thinking_tokens"] for r in t] == [3.0, 6.5, 15.0]
  with pytest.raises(ValueError, match="fewer than n=8"):
    bf_eval.vote_table(samples, [8])


def test_questions_file_errors_name_line(tmp_path):
  p = tmp_path / "q.jsonl"
  p.write_text('{"question": "1+1", "answer": "2"}\n{"question": "2+2"}\n')
  with pytest.raises(ValueError, match=r"q.jsonl:2: needs a string 'question' and a gold"):
    bf_eval.load_questions(str(p))
  with pytest.raises(ValueError, match="'max=x' is not max=N"):
    bf_eval.parse_setting("max=x")


def test_shared_trace_sweep_equals_one_run_per_setting(tmp_path):
  from tests.greedy_fake import GreedyFake  # pylint: disable=g-import-not-at-top
  c = _config(tmp_path)
  e = c.budget_eval
  e.questions = str(tmp_path / "q40.jsonl")
  with open(e.questions, "w") as f:
    f.writelines(json.dumps({"question": f"{a}*{a + 3}", "answer": str(a * (a + 3))}) + "\n"
                 for a in range(40))
  e.thinking_cap = 30
  e.sequential.settings = ("max=4", "max=10", "max=45", "none", "wait=1", "wait=3", "min=5")
  e.parallel.ns = ()
  e.plot = False
  fakes = {}
  tables = {}
  for shared in (True, False):
    e.sequential.shared_trace = shared
    fakes[shared] = GreedyFake(end_every=7)
    out = str(tmp_path / f"out_{shared}")
    tables[shared] = bf_eval.evaluate(lambda s=shared: fakes[s], c, out)["sequential"]
    rows = {spec: open(os.path.join(out, "sequential", spec + ".jsonl")).read()
            for spec in ("max4", "max10", "max45", "none", "wait1", "wait3", "min5")}
    tables[shared] = (tables[shared], rows)
  (t_shared, rows_shared), (t_direct, rows_direct) = tables[True], tables[False]
  assert rows_shared == rows_direct  # every generation and prediction, byte for byte
  assert [r["from_trace"] for r in t_shared] == [True] * 6 + [False]
  strip = lambda t: [{k: v for k, v in r.items() if k != "from_trace"} for r in t]
  assert strip(t_shared) == strip(t_direct)
  assert {r["waits"] for r in t_shared} == {0, 1, 3} and any(r["forced"] for r in t_shared)
  assert fakes[True].calls < fakes[False].calls
