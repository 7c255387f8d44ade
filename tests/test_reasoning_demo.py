"""End to end (slow): arithmetic traces -> SFT of the tiny model -> budget forcing."""

import json
import os

import pytest

from configs import s1_demo
from sbp_jax.reasoning import s1_demo as demo


@pytest.mark.slow
def test_s1_demo_learns_and_scales_with_thinking(tmp_path):
  c = s1_demo.get_config()
  c.s1_data.n_train = 4000   # x 5 epochs / 32 = 625 steps
  c.s1_data.n_test = 48
  c.s1_data.max_ops = 3      # shorter traces: learnt sooner, and fit seq_len 80
  c.train.seq_len = 80
  c.train.eval_every = 0
  c.train.log_every = 100
  c.train.checkpoint_every = 1000
  e = c.budget_eval
  e.sequential.settings = ("max=2", "max=12", "none", "wait=2")
  e.parallel.ns = (1, 2, 4)
  res = demo.run(c, str(tmp_path))
  seq = {r["setting"]: r for r in res["sequential"]}
  # The model learned something of the task, and cutting its thinking short costs accuracy
  # (an untrained model scores about 0; the full demo's longer SFT scores higher).
  assert seq["none"]["accuracy"] >= 0.3
  assert seq["max=2"]["accuracy"] + 0.1 < seq["none"]["accuracy"]
  assert seq["max=2"]["max_thinking_tokens"] <= 2 and seq["max=12"]["max_thinking_tokens"] <= 12
  assert seq["none"]["mean_thinking_tokens"] > seq["max=12"]["mean_thinking_tokens"]
  assert [r["n"] for r in res["parallel"]] == [1, 2, 4]
  out = tmp_path / "budget_eval"
  for f in ("results.json", "sequential.csv", "parallel.csv", "scaling.png"):
    assert (out / f).exists()
  # SFT trained on responses only and wrote its rendered data.
  hist = json.load(open(tmp_path / "sft" / "history.json"))
  losses = [hist["loss"][k] for k in sorted(hist["loss"], key=int)]
  assert losses[-1] < 0.5 * losses[0]
  assert os.path.exists(tmp_path / "sft" / "data" / "sft_train.jsonl")
