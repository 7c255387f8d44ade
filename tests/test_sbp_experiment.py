"""The SBP experiment runner: stage resume, random-pair data, config builders."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sbp_jax.sbp import experiment, joint
from sbp_jax.sbp import synth_tune as tuning


def _paper_config(name):
  # The paper-scale configs take their pairing and eval sections from
  # configs/sbp_pair_demo.py (issue 6) and configs/eval_demo.py (issue 5).
  pytest.importorskip("configs.sbp_pair_demo")
  pytest.importorskip("configs.eval_demo")
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(f"configs.{name}").get_config()


def test_finished_stages_are_skipped(tmp_path):
  calls = []

  def stage(sub):
    calls.append(sub)
    with open(os.path.join(sub, "out.txt"), "w") as f:
      f.write("x")
    return {"value": len(calls)}

  a = experiment.run_stage(str(tmp_path), "s", stage)
  b = experiment.run_stage(str(tmp_path), "s", stage)
  assert a["value"] == b["value"] == 1 and len(calls) == 1

  def crash(sub):
    raise RuntimeError("killed")

  with pytest.raises(RuntimeError):
    experiment.run_stage(str(tmp_path), "t", crash)
  assert not os.path.exists(tmp_path / "t" / experiment.STAGE_FILE)
  assert experiment.run_stage(str(tmp_path), "t", stage)["value"] == 2  # an unfinished stage reruns


def test_random_pairs_never_pair_a_doc_with_itself(tmp_path):
  src = tmp_path / "d.jsonl"
  src.write_text("".join(json.dumps({"id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(5)))
  rec = experiment.random_pairs_stage(str(src), 12, 0, str(tmp_path))
  rows = [json.loads(l) for l in open(rec["pairs_files"])]
  assert len(rows) == rec["num_pairs"] == 12
  assert all(r["d1_id"] != r["d2_id"] and r["d1"] == "doc " + r["d1_id"][1:] for r in rows)
  assert len({(r["d1_id"], r["d2_id"]) for r in rows}) > 5


@pytest.mark.parametrize("mod,budget,unique,synthetic,model", [
    ("sbp_3b_200b", 200e9, 10e9, 75e9, 3072), ("sbp_3b_1t", 1e12, 50e9, 125e9, 3072),
    ("sbp_6b_1t", 1e12, 50e9, 250e9, 4096)])
def test_paper_scale_configs(mod, budget, unique, synthetic, model):
  c = _paper_config(mod)
  e = c.experiment
  assert (e.token_budget, e.real_unique_tokens, e.synthetic_tokens) == (budget, unique, synthetic)
  assert c.model.d_model == model and c.model.vocab_size == 49152
  assert (c.train.global_batch_size, c.train.seq_len, c.train.lr, c.train.end_lr) == \
      (2048, 4096, 1e-2, 5e-5)
  assert c.train.warmup_frac == 0.05 and c.train.schedule == "cosine"
  assert (c.synth_tune.lr, c.synth_tune.seq_len) == (5e-6, 8192)
  assert 16e6 <= c.synth_tune.global_batch_size * c.synth_tune.seq_len <= 17e6
  assert (c.synthesize.temperature, c.synthesize.top_p, c.synthesize.shingle) == (1.0, 0.9, 13)
  assert joint.pretraining_steps(e.token_budget, 2048, 4096) == int(budget // (2048 * 4096))
  assert (c.pair.search.k, c.pair.select.alpha, c.pair.select.shingle) == (200, 0.75, 13)


def test_synthesizer_tuning_config():
  from configs.sbp_common import get_sbp_config
  base = get_sbp_config("3b")
  c = tuning.synthesizer_tuning_config(base, "/runs/base/checkpoints", "pairs/*.jsonl",
                                       num_steps=10, lr=5e-6, seq_len=8192)
  assert c.job == "train" and c.train.init_from == "/runs/base/checkpoints"
  assert c.train.schedule == "constant" and c.train.lr == 5e-6 and c.train.warmup_frac == 0
  assert c.train.seq_len == 8192 and c.model.max_seq_len >= 8192
  assert [d["format"] for d in c.data.train] == ["pairs"]
  assert base.train.schedule == "cosine" and base.train.init_from == ""  # base left alone
  with pytest.raises(ValueError, match="init_from"):
    tuning.synthesizer_tuning_config(base, "", "p", num_steps=1)


def _run_demo(root, work):
  """The README's command at the smoke size, in a fresh process on one CPU device (the
  demo's mesh), as a user would run it."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=root,
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  subprocess.run([sys.executable, "-m", "sbp_jax.main", "--config=configs/demo_realtext_cpu.py:smoke",
                  f"--workdir={work}"], cwd=root, env=env, check=True)
  with open(os.path.join(work, "results.json")) as f:
    return json.load(f)


@pytest.mark.slow  # the whole pipeline at its smallest size: several minutes on 2 CPU cores
def test_demo_pipeline_end_to_end(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if not os.path.exists(os.path.join(root, "data/demo_corpus/train.jsonl.gz")):
    pytest.skip("the demo corpus (issue 3) is not in this checkout")
  from configs import demo_realtext_cpu
  c = demo_realtext_cpu.get_config("smoke")
  work = str(tmp_path / "run")
  st = _run_demo(root, work)["stages"]
  assert st["eval"]["columns"] == ["baseline", "SBP", "oracle"]
  table = st["eval"]["table"]
  assert all(w in table for w in ("baseline", "SBP", "oracle", "Held-out"))
  rows = st["eval"]["combined"]["rows"]
  assert rows and all(np.isfinite(v) for r in rows for v in r["values"].values())
  # Every arm saw the same number of tokens.
  assert st["baseline"]["tokens"] == st["joint"]["tokens"] == st["oracle"]["tokens"]
  assert st["synthesize"]["kept_tokens"] >= c.experiment.synthetic_tokens
  q = st["quality"]
  assert {"SBP synthetic", "Random-pair synthetic", "Real data (D_pretrain)"} <= set(q["quality"])
  assert {"paired", "random", "generated_sbp", "generated_random"} <= set(q["b1"])
  text = open(os.path.join(work, "results.txt")).read()
  assert "Table 3.2" in text and "Table 3.3" in text and "Table B.1" in text
  # A re-run finds every stage done and reproduces the results without training.
  again = _run_demo(root, work)["stages"]
  assert again["eval"]["table"] == table
  assert all(again[k]["seconds"] == v["seconds"] for k, v in st.items()
             if isinstance(v, dict) and "seconds" in v)
