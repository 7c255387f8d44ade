"""The eval and eval_table jobs end to end."""

import json
import os

import pytest

from configs import eval_demo, eval_table, tiny_train
from sbp_jax import runs
from sbp_jax.errors import InputError
from sbp_jax.eval import jobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "eval")


def _config(tasks, checkpoint=""):
  c = eval_demo.get_config()
  c.eval.tasks = tasks
  c.eval.checkpoint = checkpoint
  return c


def test_eval_job_writes_results_and_resumes(tmp_path, capsys):
  names = {"heldout", "winogrande", "triviaqa"}
  tasks = [dict(t, limit=2) for t in eval_demo.suite(FIX) if t["name"] in names]
  c = _config(tasks)
  c.eval.max_len = 64  # few buckets: a quick smoke run on random weights
  work = str(tmp_path / "run")
  res = jobs.run_eval(c, work)
  assert set(res["tasks"]) == names
  assert res["tasks"]["heldout"]["metrics"]["n"] == 2
  assert res["tasks"]["heldout"]["metrics"]["perplexity"] > 1
  assert 0 <= res["tasks"]["triviaqa"]["metrics"]["em"] <= 1
  assert res["scoring"]["scored_tokens"] > 0
  table = capsys.readouterr().out
  assert "Winogrande (0-shot)" in table and "perplexity" in table
  preds = [json.loads(l) for l in open(os.path.join(work, "eval", "triviaqa.predictions.jsonl"))]
  assert len(preds) == 2 and all("prediction" in p for p in preds)
  with open(os.path.join(work, "results.json")) as f:
    assert json.load(f)["tasks"].keys() == names

  # A re-run with the same identity reuses every finished task (a lost one is redone);
  # a changed task stops before any compute, naming it; --overwrite recomputes.
  os.remove(os.path.join(work, "eval", "triviaqa.json"))
  stamp = {n: os.path.getmtime(os.path.join(work, "eval", f"{n}.json"))
           for n in names - {"triviaqa"}}
  c.eval.batch_size = 2 * c.eval.batch_size  # how, not what: the same identity
  again = jobs.run_eval(c, work)
  assert again["tasks"]["triviaqa"]["metrics"] == res["tasks"]["triviaqa"]["metrics"]
  for n, t in stamp.items():
    assert os.path.getmtime(os.path.join(work, "eval", f"{n}.json")) == t
    assert again["tasks"][n] == res["tasks"][n]
  c.eval.tasks = [dict(t, limit=3) if t["name"] == "winogrande" else t for t in tasks]
  with pytest.raises(InputError, match=r"eval\.tasks\.winogrande\.limit: 2 -> 3.*--overwrite"):
    jobs.run_eval(c, work)
  with runs.overwriting(True):
    res2 = jobs.run_eval(c, work)
  assert res2["tasks"]["winogrande"]["metrics"]["n"] == 3
  assert res2["tasks"]["heldout"]["metrics"] == res["tasks"]["heldout"]["metrics"]

  # eval_table: the same run as baseline and as a second column gives zero deltas.
  t = eval_table.get_config()
  t.table.runs = [dict(label="Base", results=os.path.join(work, "results.json")),
                  dict(label="Same", results=os.path.join(work, "results.json"))]
  t.table.baseline, t.table.oracle = "Base", ""
  out = jobs.run_eval_table(t, str(tmp_path / "table"))
  assert all(r["values"]["Base"] == r["values"]["Same"] for r in out["rows"])
  assert os.path.exists(tmp_path / "table" / "table.txt")


def test_eval_config_errors(tmp_path):
  c = _config([dict(name="x", format="cloze", files="a.jsonl")])
  with pytest.raises(ValueError, match=r"eval.tasks\[0\] needs a name and a format"):
    jobs.run_eval(c, str(tmp_path))
  c = _config([dict(name="x", format="perplexity", file="a.jsonl")])
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['file'\]"):
    jobs.run_eval(c, str(tmp_path))
  c = _config([dict(name="x", format="perplexity")])
  with pytest.raises(ValueError, match="needs `files`"):
    jobs.run_eval(c, str(tmp_path))
  c = _config([dict(name="x", format="perplexity", files=os.path.join(FIX, "heldout.jsonl"))])
  c.model.vocab_size = 256
  with pytest.raises(ValueError, match="tokenizer has 264 ids"):
    jobs.run_eval(c, str(tmp_path))
  t = eval_table.get_config()
  t.table.runs = [dict(label="A", results=str(tmp_path / "missing.json"))]
  with pytest.raises(FileNotFoundError, match="results.json"):
    jobs.run_eval_table(t, str(tmp_path))


@pytest.mark.slow  # trains the tiny byte model briefly, then evaluates every fixture
def test_demo_checkpoint_on_every_format(tmp_path, capsys):
  from sbp_jax.train import loop  # pylint: disable=g-import-not-at-top
  tc = tiny_train.get_config()
  tc.model.vocab_size = 512
  tc.train.num_steps = 40
  tc.train.checkpoint_every = 40
  tc.train.eval_every = 0
  loop.train(tc, str(tmp_path / "train"))
  c = _config(eval_demo.suite(FIX), checkpoint=str(tmp_path / "train" / "checkpoints"))
  res = jobs.run_eval(c, str(tmp_path / "eval"))
  assert list(res["tasks"]) == [t["name"] for t in eval_demo.suite(FIX)]
  out = capsys.readouterr().out
  assert "Five-shot MMLU" in out and "WebQS (1-shot)" in out
  rand = jobs.run_eval(_config(eval_demo.suite(FIX)[:1]), str(tmp_path / "random"))
  # Training on English bytes makes held-out English text likelier than random weights do.
  assert res["tasks"]["heldout"]["metrics"]["perplexity"] < \
      rand["tasks"]["heldout"]["metrics"]["perplexity"]
