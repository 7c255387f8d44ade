"""The generate job and the budget-forcing preset of budget_eval, end to end on tiny models."""

import json
import os

import pytest

from configs import budget_forcing_tiny, generate_tiny
from sbp_jax.generate import generate_job
from sbp_jax.generate.budget_forcing import parse_setting
from sbp_jax.reasoning import bf_eval


def _write_prompts(path, prompts):
  with open(path, "w") as f:
    for p in prompts:
      f.write(json.dumps({"prompt": p, "id": p[:3]}) + "\n")


@pytest.mark.slow  # ~30-90 s on the 8-device CPU mesh; the import test also runs this job
def test_generate_job_writes_parts_and_skips_finished(tmp_path):
  c = generate_tiny.get_config()
  c.generate.prompts = str(tmp_path / "p.jsonl")
  c.generate.max_new_tokens = 4
  c.generate.shard_size = 2
  c.generate.batch_size = 2
  _write_prompts(c.generate.prompts, ["Hello", "The cat", "Once upon"])
  work = str(tmp_path / "run")
  generate_job.run_generate(c, work)
  parts = sorted(os.listdir(os.path.join(work, "outputs")))
  assert parts == ["part-00000.jsonl", "part-00001.jsonl"]
  rows = [json.loads(l) for p in parts for l in open(os.path.join(work, "outputs", p))]
  assert [r["prompt"] for r in rows] == ["Hello", "The cat", "Once upon"]
  assert all(r["num_tokens"] <= 4 and "completion" in r and r["id"] for r in rows)
  # A re-run leaves finished parts alone.
  mtime = os.path.getmtime(os.path.join(work, "outputs", parts[0]))
  generate_job.run_generate(c, work)
  assert os.path.getmtime(os.path.join(work, "outputs", parts[0])) == mtime


def test_bad_inputs_name_file_line_and_field(tmp_path):
  p = tmp_path / "q.jsonl"
  p.write_text('{"question": "a"}\n{"q": "b"}\n')
  with pytest.raises(ValueError, match=r"q\.jsonl:2: needs a string field 'question'"):
    generate_job.read_prompts(str(p), "question")
  p.write_text('{"question": "a"\n')
  with pytest.raises(ValueError, match=r"q\.jsonl:1: not valid JSON"):
    generate_job.read_prompts(str(p), "question")
  with pytest.raises(ValueError, match="max=N"):
    parse_setting("max=ten")
  assert parse_setting("min=8,wait=2") == {"min_thinking": 8, "num_waits": 2}
  assert parse_setting("max=0") == {"max_thinking": 0}  # no thinking, not "unlimited"


@pytest.mark.slow
def test_budget_forcing_job_obeys_budgets(tmp_path):
  c = budget_forcing_tiny.get_config()
  c.budget_eval.sequential.settings = ("max=0", "max=8", "max=64,wait=4")
  c.budget_eval.inline_questions = ("What is 7 times 8?", "Is 91 prime?")
  seq = {r["setting"]: r for r in bf_eval.run(c, str(tmp_path))["sequential"]}
  assert seq["max=0"]["max_thinking_tokens"] == 0  # max=0: no thinking at all
  assert seq["max=8"]["max_thinking_tokens"] <= 8
  assert seq["max=64,wait=4"]["max_thinking_tokens"] <= 64
  assert seq["max=8"]["accuracy"] is None  # inline questions carry no gold answers
  assert os.path.exists(tmp_path / "budget_eval" / "results.json")
