"""Budget forcing and EntiGraph on SmolLM2 (configs/*_smollm2.py): reasoning-gym
questions are reproducible and scored right, the chat prompt keeps the model's
template, the configs point at real jobs and import first; slow tests run both
jobs end to end on the imported model at toy sizes."""

import dataclasses
import json
import os

import pytest

from configs import budget_forcing_smollm2, entigraph_smollm2, import_smollm2
from sbp_jax import main
from sbp_jax.convert import gguf_import
from sbp_jax.generate.chat import ChatTemplate
from sbp_jax.model import ModelConfig
from sbp_jax.reasoning import answers, gym_eval
from sbp_jax.reasoning.gym_questions import counts, make_questions

TASKS = [dict(t) for t in budget_forcing_smollm2.gym_section().tasks]


def test_counts_split_in_proportion_and_sum_to_n():
  assert counts([1, 1, 1], 7) == [3, 2, 2] or sorted(counts([1, 1, 1], 7)) == [2, 2, 3]
  assert sum(counts([1, 1, 1], 7)) == 7
  assert counts([3, 1], 8) == [6, 2]
  with pytest.raises(ValueError):
    counts([1, 0], 4)


def test_gym_questions_are_deterministic_interleaved_and_checkable():
  import reasoning_gym  # pylint: disable=g-import-not-at-top
  a = make_questions(TASKS, 12, seed=7, suffix="\nHint.")
  assert a == make_questions(TASKS, 12, seed=7, suffix="\nHint.")
  assert a != make_questions(TASKS, 12, seed=8, suffix="\nHint.")
  assert len(a) == 12 and len({r["id"] for r in a}) == 12
  names = [t["name"] for t in TASKS]
  assert [r["task"] for r in a[:len(names)]] == names  # interleaved: a prefix keeps the mix
  for r in a:
    assert r["question"].endswith("\nHint.")
    assert answers.kind_of(r["answer"]) == "numeric"
    # Our extractor reads a correct answer in prose and rejects a wrong one ...
    assert answers.is_correct(f"So the result is {r['answer']}.", r["answer"])
    wrong = str(int(r["answer"]) + 1)
    assert not answers.is_correct(f"So the result is {wrong}.", r["answer"])
    # ... and reasoning-gym's own scorer agrees on the same entry.
    score = reasoning_gym.get_score_answer_fn(r["task"])
    entry = {"question": r["question"], "answer": r["answer"], "metadata": r["metadata"]}
    assert score(r["answer"], entry) == 1.0 and score(wrong, entry) < 1.0


def test_gym_questions_reject_unknown_and_free_text_tasks():
  with pytest.raises(ValueError, match="no_such_task"):
    make_questions([dict(name="no_such_task")], 2, seed=0)
  with pytest.raises(ValueError, match="syllogism.*free text"):
    make_questions([dict(name="syllogism")], 2, seed=0)


def test_write_questions_refuses_a_workdir_with_other_questions(tmp_path):
  g = budget_forcing_smollm2.gym_section()
  g.num_questions = 5
  path = str(tmp_path / "questions.jsonl")
  assert gym_eval.write_questions(g, path) == 5
  rows = [json.loads(line) for line in open(path)]
  assert [r["answer"] for r in rows] == [r["answer"] for r in make_questions(
      [dict(t) for t in g.tasks], 5, int(g.seed), g.suffix)]
  assert gym_eval.write_questions(g, path) == 5  # same config: resumes
  g.seed += 1
  with pytest.raises(ValueError, match="fresh --workdir"):
    gym_eval.write_questions(g, path)


def test_chat_prompt_keeps_template_text_and_escapes_braces():
  src = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant {x}\n{% endif %}")
  p = gym_eval.chat_prompt(ChatTemplate(src, system="Be brief."))
  assert p.format(question="2+{3}?") == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                                        "<|im_start|>user\n2+{3}?<|im_end|>\n"
                                        "<|im_start|>assistant {x}\n")


def test_smollm2_configs_use_existing_jobs_and_import_first():
  bf, eg = budget_forcing_smollm2.get_config(), entigraph_smollm2.get_config()
  for c in (bf, eg):
    assert c.job in main.JOBS
    main.resolve_job(c.job)
    assert c.import_gguf.source == import_smollm2.get_config().convert.source
    assert c.generate.model_json == os.path.join(c.import_gguf.workdir, "model.json")
    assert c.tokenizer.kind == "hf" and c.generate.chat
  e = bf.budget_eval
  assert e.template.name == "chatml" and bf.gym.chat_template
  assert set(e.sequential.settings) == {"none", "max=32", "max=64", "max=128", "max=256",
                                        "wait=2", "wait=4", "wait=6"}
  assert {2, 4, 8, 16} <= set(e.parallel.ns) and e.parallel.temperature == 1.0
  assert eg.generator.kind == "local" and eg.generator.style == "chat"
  assert eg.entigraph.documents == "data/demo_corpus/train.jsonl.gz"
  assert 3 <= eg.entigraph.max_docs <= 5 and eg.entigraph.extraction_retries >= 1


def test_ensure_imported_skips_a_finished_import_and_names_missing_fields(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ModelConfig(vocab_size=64, num_layers=1, d_model=8, d_ffn=16, num_heads=2,
                    num_kv_heads=1)
  src = tmp_path / "not_really.gguf"  # not a GGUF: a finished import must never parse it
  src.write_bytes(b"placeholder")
  (tmp_path / "model.json").write_text(json.dumps(dataclasses.asdict(cfg)))
  sec = ml_collections.ConfigDict(dict(source=str(src), workdir=str(tmp_path)))
  # Without its run identity, nothing says which source made it: never reused.
  with pytest.raises(ValueError, match="model.json.* written before run identities"):
    gguf_import.ensure_imported(sec)
  # An import claims its workdir before it writes (runs.claim), then writes model.json last.
  os.remove(tmp_path / "model.json")
  gguf_import.claim_import(str(tmp_path), "import_gguf", str(src), "bfloat16", str(src))
  (tmp_path / "model.json").write_text(json.dumps(dataclasses.asdict(cfg)))
  assert gguf_import.ensure_imported(sec) == str(tmp_path)
  other = tmp_path / "other.gguf"  # another source into the same workdir: stops, naming it
  other.write_bytes(b"another placeholder")
  with pytest.raises(ValueError, match=r"convert\.source: .*not_really\.gguf' -> "
                     r".*other\.gguf'.*--overwrite"):
    gguf_import.ensure_imported(ml_collections.ConfigDict(dict(source=str(other),
                                                               workdir=str(tmp_path))))
  # The run identity needs the source: a missing one is named, never silently reused.
  sec.source = str(tmp_path / "nonexistent.gguf")
  with pytest.raises(FileNotFoundError, match="nonexistent.gguf"):
    gguf_import.ensure_imported(sec)
  with pytest.raises(ValueError, match="workdir"):
    gguf_import.ensure_imported(ml_collections.ConfigDict(dict(source="x.gguf", workdir="")))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  gguf_import.resolve_source(gguf_import.SMOLLM2_SOURCE)  # installed by launch/setup.sh
  out = str(tmp_path_factory.mktemp("smollm2_import"))
  c = budget_forcing_smollm2.get_config()
  c.import_gguf.workdir = out
  gguf_import.ensure_imported(c.import_gguf)
  return out


def _point_at(c, out):
  c.import_gguf.workdir = out
  c.generate.model_json = os.path.join(out, "model.json")
  c.generate.checkpoint = os.path.join(out, "checkpoints")
  c.tokenizer.path = os.path.join(out, "tokenizer")


@pytest.mark.slow
def test_budget_forcing_on_smollm2_end_to_end(imported, tmp_path):
  c = budget_forcing_smollm2.get_config()
  _point_at(c, imported)
  c.gym.num_questions = 3
  e = c.budget_eval
  e.thinking_cap, e.max_answer_tokens, e.batch_size = 24, 6, 8
  e.sequential.settings = ("none", "max=8", "wait=1")
  e.parallel.ns = (1, 2)
  e.parallel.questions_per_part = 3
  e.plot = True
  res = gym_eval.run(c, str(tmp_path))
  assert res["n_questions"] == 3
  seq = {r["setting"]: r for r in res["sequential"]}
  assert seq["max=8"]["max_thinking_tokens"] <= 8
  assert seq["none"]["max_thinking_tokens"] <= 24
  assert [r["n"] for r in res["parallel"]] == [1, 2]
  out = tmp_path / "budget_eval"
  assert (out / "scaling.png").stat().st_size > 0 and (out / "sequential.csv").exists()
  rows = [json.loads(line) for line in open(out / "sequential" / "max8.jsonl")]
  assert e.template.prompt.startswith("<|im_start|>system")  # the model's own template
  for r in rows:
    assert r["correct"] == answers.is_correct(r["answer"], r["gold"])


@pytest.mark.slow
def test_entigraph_on_smollm2_end_to_end(imported, tmp_path):
  from sbp_jax.entigraph import synth_corpus  # pylint: disable=g-import-not-at-top
  c = entigraph_smollm2.get_config()
  _point_at(c, imported)
  e = c.entigraph
  e.max_docs, e.max_entities, e.num_triples, e.extraction_retries = 1, 3, 1, 1
  e.extraction_max_tokens, e.relation_max_tokens, e.progress = 48, 12, False
  synth_corpus.run(c, str(tmp_path))
  m = json.load(open(tmp_path / "manifest.json"))
  assert m["documents_started"] == 1
  ext = m["extraction"]
  assert ext["parsed"] + ext["failed"] == 1
  if ext["failed"]:  # recorded with the raw replies (one per attempt)
    fails = [json.loads(line) for line in open(tmp_path / "failures.jsonl")]
    assert len(fails) == 1 + e.extraction_retries and all("raw" in f for f in fails)
  else:
    assert m["pairs"] <= 3 and m["triples"] <= 1
