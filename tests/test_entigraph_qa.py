"""Closed-book QA: answer parsing, sampling-mode accuracy, loaders, log-likelihood scorer."""

import json
import random
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbp_jax.entigraph import prompts, qa
from sbp_jax.entigraph.articles import Question, load_questions

PARSE = [
    ("The manor is Pemberley, so A fits.\nAnswer: A.", "A"),
    ("Thought: ...\nAnswer: c", None),                     # upper-case letters only
    ("Answer: B. Wait, no.\nAnswer: D.", "D"),            # the last answer counts
    ("so the answer is (B)", "B"),
    ("It must be the third one. C.", "C"),                 # A.7.1: ends in 'X.'
    ("Answer: **D**", "D"),
    ("Answer: A.\n\n## Example 7\n### Question\n...Answer: B.", "A"),  # stops at a new example
    ("I do not know.", None),
    ("Answer: E.", None),
    ("The answer depends on context", None),
    ("", None),
    ("Choices A and B are both plausible", None),
    # Strictness (a lax, case-insensitive 'answer ... X' reads these as A):
    ("I cannot answer a question about an article I have not read.", None),
    ("Reasoning: none.\nI cannot answer. A", None),
    ("the answer is a mystery to me", None),
    ("It is a tool that compiles files, so it is a.", None),   # a letter inside a sentence
    ("Answer: A or B.", None),
    ("Option B looks wrong.\nAnswer: A.\nI am not sure.", None),  # the last line decides
    ("The flag is -j. A.", "A"),
    ("B is out, so it is not B. Answer: C", "C"),
    (" B\n\n##", "B"),            # cut by the token limit inside the next example's header
    (" B\n\n## Exam", "B"),
    ("Answer: B.\n## Notes", None),  # any other heading is a last line that is no answer
]


@pytest.mark.parametrize("reply,want", PARSE)
def test_parse_answer(reply, want):
  assert qa.parse_answer(reply) == want


def _questions(n=8):
  return [Question(id=f"q{i}", doc_id="d", title="T", author="Au", question=f"what is {i}?",
                   choices=("w", "x", "y", "z"), answer=i % 4) for i in range(n)]


class FixedGen:
  """Reply j of each question: a scripted letter (or junk)."""

  def __init__(self, script):
    self.script, self.prompts = script, []

  def complete(self, prompt_list, params):
    out = []
    for p in prompt_list:
      self.prompts.append(p)
      i = int(p.rsplit("what is ", 1)[1].split("?")[0])
      out.append(self.script(i, len([x for x in self.prompts if f"what is {i}?" in x]) - 1))
    return out


def test_sample_mode_accuracy_and_parse_rate():
  qs = _questions(8)
  gold = "ABCD"

  def script(i, j):  # q0-3: every reply right; q4-5: all junk; q6-7: one right, one junk
    if i < 4:
      return f"Reasoning.\nAnswer: {gold[i % 4]}."
    if i < 6:
      return "no idea"
    return f"Answer: {gold[i % 4]}." if j == 0 else "hmm"
  gen = FixedGen(script)
  rows, s = qa.sample_eval(gen, qs, k=2, params=qa.GenParams(max_tokens=8), shots=2, seed=0)
  assert len(gen.prompts) == 16 and all(p.endswith("Reasoning:") for p in gen.prompts)
  assert gen.prompts[0].count("## Example") == 3
  assert s["accuracy"] == pytest.approx(6 / 8)
  assert s["parse_rate"] == pytest.approx((8 + 0 + 2) / 16)
  assert s["answered_rate"] == pytest.approx(6 / 8)
  assert s["accuracy_on_answered"] == 1.0
  assert [r["pick"] for r in rows[4:6]] == [None, None]


def test_random_pick_among_valid_is_seeded_and_unbiased():
  picks = [qa.pick_answer(["A", "B", "B", "C"], random.Random(i)) for i in range(4000)]
  freq = {c: picks.count(c) / 4000 for c in "ABC"}
  assert abs(freq["B"] - 0.5) < 0.04 and abs(freq["A"] - 0.25) < 0.04
  assert qa.pick_answer([], random.Random(0)) is None


def test_majority_pick_takes_the_most_frequent_and_breaks_ties_at_random():
  assert all(qa.pick_answer(["A", "B", "B", "C"], random.Random(i), "majority") == "B"
             for i in range(50))
  ties = {qa.pick_answer(["A", "C", "C", "A", "D"], random.Random(i), "majority")
          for i in range(50)}
  assert ties == {"A", "C"}
  with pytest.raises(ValueError, match="qa.pick='vote'"):
    qa.pick_answer(["A"], random.Random(0), "vote")


def test_question_rewriting_and_prompt():
  q = prompts.qa_question("Glass Orchard", "Pim Ardent", "Who grows the apples?", "1931")
  assert q == 'About "Glass Orchard" by Pim Ardent (1931): who grows the apples? Exactly one choice is right.'
  p = prompts.qa_prompt(q, ("a", "b", "c", "d"), shots=5)
  assert p.count("## Example") == 6 and p.count("Answer: ") == 5
  assert p.endswith("D. d\n### Reasoning and Answer\nReasoning:")
  for s in prompts.QA_SHOTS:  # each worked example's answer parses to its letter
    assert qa.parse_answer(f"Reasoning: {s['reasoning']}\nAnswer: {s['answer']}.") == s["answer"]


def test_answer_only_prompt_shows_no_reasoning_and_its_replies_parse():
  q = prompts.qa_question("Glass Orchard", "Pim Ardent", "Who grows the apples?")
  p = prompts.qa_prompt(q, ("a", "b", "c", "d"), shots=2, reasoning=False)
  assert "Reasoning" not in p and p.count("## Example") == 3
  assert p.endswith("D. d\n### Answer\nAnswer:")
  assert "### Answer\nAnswer: B.\n\n## Example 2" in p  # the first shot's answer, at once
  for reply, want in ((" B.\n\n", "B"), (" C", "C"), (" c.", None), (" B.\n\nI am unsure.", None)):
    assert qa.parse_answer(reply) == want


def test_sample_mode_without_reasoning_sends_answer_only_prompts():
  gen = FixedGen(lambda i, j: f" {'ABCD'[i % 4]}.\n\n")
  _, s = qa.sample_eval(gen, _questions(4), k=2, params=qa.GenParams(max_tokens=8), shots=1,
                        seed=0, reasoning=False)
  assert all(p.endswith("Answer:") and "Reasoning" not in p for p in gen.prompts)
  assert s["accuracy"] == 1.0 and s["parse_rate"] == 1.0


def test_qa_job_passes_answer_only_to_the_sampler(tmp_path):
  from configs import entigraph_qa
  c = entigraph_qa.get_config()
  c.qa.update(modes=("sample",), k=1, shots=1, max_new_tokens=4, max_questions=2)
  for reasoning, tail in ((True, "Reasoning:"), (False, "Answer:")):
    c.qa.reasoning = reasoning
    seen = []
    gen = types.SimpleNamespace(complete=lambda ps, params: seen.extend(ps) or [" A."] * len(ps))
    qa.evaluate(c, str(tmp_path / str(reasoning)), generator=gen)
    assert len(seen) == 2 and all(p.endswith(tail) for p in seen)


def test_loads_quality_and_own_format(tmp_path):
  qual = tmp_path / "QuALITY.v1.0.1.htmlstripped.dev"
  art = dict(article_id="20001", set_unique_id="20001_A", title="Cosmic Tea", author="R. Nobody",
             year="1952", article="Long text.", questions=[
                 dict(question="Why?", options=["a", "b", "c", "d"], gold_label=3,
                      question_unique_id="20001_A_1"),
                 dict(question="Who?", options=["e", "f", "g", "h"], question_unique_id="x2")])
  qual.write_text(json.dumps(art) + "\n" + json.dumps({**art, "set_unique_id": "20001_B"}) + "\n")
  own = tmp_path / "own.jsonl"
  own.write_text(json.dumps(dict(id="o1", doc_id="a1", title="T", author="A", question="Q?",
                                 choices=["1", "2", "3", "4"], answer="B")) + "\n")
  qs = load_questions([str(qual), str(own)])
  assert [(q.id, q.answer) for q in qs] == [("20001_A_1", 2), ("x2", None), ("o1", 1)]
  assert qs[0].title == "Cosmic Tea" and qs[0].author == "R. Nobody" and qs[0].year == "1952"
  from sbp_jax.entigraph.articles import load_documents
  docs = load_documents(str(qual))  # QuALITY repeats an article per question set
  assert [(d.id, d.text) for d in docs] == [("20001", "Long text.")]
  bad = tmp_path / "bad.jsonl"
  bad.write_text(json.dumps(dict(title="T", author="A", question="Q", choices=["1", "2"],
                                 answer="A")) + "\n")
  with pytest.raises(ValueError, match=r"bad\.jsonl:1: 'choices' must list 4"):
    load_questions(str(bad))
  bad.write_text(json.dumps({**art, "questions": [dict(question="q", options=list("abcd"),
                                                       gold_label=0)]}) + "\n")
  with pytest.raises(ValueError, match="1-based"):
    load_questions(str(bad))


def test_loglik_scorer_matches_direct_forward():
  from sbp_jax.generate.sampler import Sampler
  from sbp_jax.generate.text_codec import ByteTokenizer
  from sbp_jax.model import ModelConfig, Transformer
  cfg = ModelConfig(vocab_size=272, num_layers=2, d_model=32, d_ffn=64, num_heads=4,
                    num_kv_heads=2, dtype="float32", remat_policy="none")
  model = Transformer(cfg)
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
  tok = ByteTokenizer()
  sampler = Sampler(cfg, params, tokenizer=tok)
  pairs = [("Question: who?\nAnswer:", " the miller"), ("Q", " x"),
           ("A much longer prompt about the orchard and its keeper.", " glass apples")]
  got = qa.score_choices(qa.make_scorer(sampler, batch_size=2), tok, pairs)
  fwd = jax.jit(lambda x: jax.nn.log_softmax(model.apply({"params": params}, x)["logits"], -1))
  for (p, c), g in zip(pairs, got):
    ids = tok.encode(p + c)
    lp = np.asarray(fwd(jnp.asarray([ids])))[0]  # unpadded, one sequence
    n = len(tok.encode(p))
    want = sum(float(lp[t - 1, ids[t]]) for t in range(n, len(ids)))
    assert g == pytest.approx(want, rel=1e-4, abs=1e-3)
  # The loglik eval picks the argmax choice.
  qs = [Question("q", "d", "T", "A", "which?", ("aa", "bb", "cc", "dd"), 2)]
  rows, s = qa.loglik_eval(qa.make_scorer(sampler), tok, qs)
  assert rows[0]["pick"] == "ABCD"[int(np.argmax(rows[0]["scores"]))]
  assert s["accuracy"] == float(rows[0]["pick"] == "C")


def test_qa_job_refuses_a_workdir_answered_with_other_settings(tmp_path, monkeypatch):
  from configs import entigraph_qa
  from sbp_jax.errors import InputError
  calls = []

  def fake_evaluate(config, workdir):
    calls.append(int(config.qa.k))
    s = {m: dict(questions=3, accuracy=0.5, parse_rate=1.0, answered_rate=1.0,
                 accuracy_norm=0.5) for m in config.qa.modes}
    qa.fileio.makedirs(str(tmp_path / "qa"))
    qa.fileio.write_json(str(tmp_path / "qa" / "summary.json"), s)
    return s

  monkeypatch.setattr(qa, "evaluate", fake_evaluate)
  c = entigraph_qa.get_config()
  qa.run(c, str(tmp_path))
  qa.run(c, str(tmp_path))  # the same settings: evaluated again (the weights may be new)
  assert calls == [64, 64]
  c.qa.k = 8
  with pytest.raises(InputError, match=r"qa\.k: 64 -> 8.*--overwrite"):
    qa.run(c, str(tmp_path))
  assert calls == [64, 64]
  c.qa.k, c.generator.http.max_concurrency = 64, 3  # how an endpoint is called: no change
  qa.run(c, str(tmp_path))
  assert calls == [64, 64, 64]
