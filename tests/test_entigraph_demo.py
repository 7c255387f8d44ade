"""The EntiGraph demo loop end to end (shortened) on the tiny model."""

import json
import os

import pytest

from configs import entigraph_demo
from sbp_jax.entigraph import entigraph_demo as demo


@pytest.mark.slow  # ~1-3 min on CPU
def test_demo_runs_end_to_end(tmp_path, capsys):
  c = entigraph_demo.get_config()
  c.demo.base_steps = 10
  c.demo.cpt_epochs = 1.0
  c.entigraph.max_docs = 2
  c.entigraph.max_entities = 3
  c.entigraph.num_triples = 1
  c.entigraph.relation_max_tokens = 16
  c.entigraph.extraction_max_tokens = 16
  c.qa.max_questions = 3
  c.qa.k = 2
  c.qa.max_new_tokens = 8
  r = demo.run(c, str(tmp_path))
  m = r["entigraph"]
  assert m["documents_done"] == 2 and m["extraction"]["documents"] == 2
  # Each document has >= 3 capitalised phrases, so 3 pairs and 1 triple each (whatever parsed).
  assert m["pairs"] == 6 and m["triples"] == 2
  assert r["cpt_plan"]["num_steps"] >= 1
  assert os.listdir(tmp_path / "cpt" / "checkpoints")
  for when in ("qa_before", "qa_after"):
    assert set(r[when]) == {"sample", "loglik"}
    assert r[when]["loglik"]["questions"] == 3
    assert 0.0 <= r[when]["sample"]["parse_rate"] <= 1.0
  out = capsys.readouterr().out
  assert "entity JSON parse rate" in out and "after CPT" in out
  assert json.load(open(tmp_path / "demo_summary.json"))["cpt_plan"] == r["cpt_plan"]
