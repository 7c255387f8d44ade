"""s1 SFT rendering: templates, the loss mask, and truncation as an error."""

import json

import pytest
import sentencepiece as spm

from sbp_jax.data import special_tokens as st
from sbp_jax.data.tokenizer import train_sentencepiece
from sbp_jax.generate.text_codec import ByteTokenizer
from configs import s1_sft_tiny
from sbp_jax.reasoning import arith_data, sft, sft_data

REC = {"id": "q7", "question": "Left to right: 3+8*4", "reasoning": "3+8=11\n11*4=44\n",
       "answer": "44"}


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
  """A tiny SentencePiece model with the project's options (digits split, identity
  normalisation, special tokens as single pieces)."""
  prefix = str(tmp_path_factory.mktemp("spm") / "arith")
  recs = arith_data.make_splits(400, 0, seed=3)["train"]
  texts = arith_data.tokenizer_texts(recs, sft_data.TEMPLATES["plain"])
  texts += arith_data.tokenizer_texts(recs, sft_data.TEMPLATES["chatml"])
  path = train_sentencepiece(texts, prefix, 300, num_threads=1, character_coverage=1.0,
                             hard_vocab_limit=False)
  proc = spm.SentencePieceProcessor(model_file=path)
  proc.path = path
  return proc


def test_plain_and_chatml_render_the_thesis_layout():
  r = sft_data.render(REC, sft_data.TEMPLATES["plain"])
  assert r == {"id": "q7", "prompt": f"Question: Left to right: 3+8*4\n{st.THINK_START}",
               "response": f"3+8=11\n11*4=44\n{st.THINK_END}44"}
  r = sft_data.render(REC, sft_data.TEMPLATES["chatml"])
  assert r["prompt"] + r["response"] == (
      "<|im_start|>user\nLeft to right: 3+8*4<|im_end|>\n<|im_start|>assistant\n"
      "<|im_start|>think\n3+8=11\n11*4=44\n\n<|im_start|>answer\n44<|im_end|>")
  # Config overrides on top of a named template.
  t = sft_data.template_from_config({"name": "plain", "answer_prefix": "Final Answer: "})
  assert sft_data.render(REC, t)["response"].endswith(f"{st.THINK_END}Final Answer: 44")
  with pytest.raises(ValueError, match="template.name='qwen'"):
    sft_data.template_from_config({"name": "qwen"})


@pytest.mark.parametrize("name", ["plain", "chatml"])
def test_loss_mask_covers_exactly_reasoning_and_answer(spm_model, name):
  t = sft_data.TEMPLATES[name]
  ids, mask = sft_data.tokenize(sft_data.render(REC, t), spm_model)
  assert len(ids) == len(mask) and ids[-1] == st.EOS_ID
  masked = [i for i, m in zip(ids, mask) if m]
  unmasked = [i for i, m in zip(ids, mask) if not m]
  # The masked part decodes to exactly trace + delimiter + answer (+ end of turn), then EOS.
  assert spm_model.decode(masked[:-1]) == sft_data.render(REC, t)["response"]
  assert spm_model.decode(unmasked) == t.prompt.format(question=REC["question"]) + t.think_start
  # The mask is one contiguous block at the end: nothing of the question is trained on.
  first = mask.index(1)
  assert all(mask[first:]) and not any(mask[:first])
  # Every reasoning and answer token is inside it.
  for part in (REC["reasoning"], REC["answer"]):
    assert spm_model.decode(masked).count(part) >= 1
  assert REC["question"] not in spm_model.decode(masked)


def test_byte_tokenizer_mask_counts():
  tok = ByteTokenizer()
  ids, mask = sft_data.tokenize(sft_data.render(REC, sft_data.TEMPLATES["plain"]), tok,
                                eos_id=tok.eos_ids[0])
  n_resp = len(REC["reasoning"]) + 1 + len(REC["answer"]) + 1  # trace, THINK_END, answer, EOS
  assert sum(mask) == n_resp and len(ids) - sum(mask) == len("Question: \n") + len(
      REC["question"]) + 1


def _write(path, recs):
  path.write_text("".join(json.dumps(r) + "\n" for r in recs))
  return str(path)


def test_render_file_checks_lengths_and_names_the_record(tmp_path, spm_model):
  recs = [dict(REC, id=f"r{i}") for i in range(3)]
  recs.append(dict(REC, id="too-long", reasoning=REC["reasoning"] * 20))
  src = _write(tmp_path / "in.jsonl", recs)
  dst = str(tmp_path / "out.jsonl")
  with pytest.raises(ValueError, match=r"record .too-long. is \d+ tokens .* train.seq_len=64"):
    sft_data.render_file(src, dst, sft_data.TEMPLATES["plain"], spm_model, seq_len=64)
  assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
  stats = sft_data.render_file(_write(tmp_path / "ok.jsonl", recs[:3]), dst,
                               sft_data.TEMPLATES["plain"], spm_model, seq_len=64)
  rows = [json.loads(line) for line in open(dst)]
  assert stats["records"] == 3 and stats["max_tokens"] <= 64
  assert [r["id"] for r in rows] == ["r0", "r1", "r2"] and set(rows[0]) == {"id", "prompt",
                                                                              "response"}


def test_bad_records_name_file_line_and_field(tmp_path):
  src = tmp_path / "bad.jsonl"
  src.write_text(json.dumps(REC) + "\n" + json.dumps({"question": "q", "answer": "1"}) + "\n")
  with pytest.raises(ValueError, match=r"bad.jsonl:2: field\(s\) \['reasoning'\]"):
    sft_data.read_records(str(src))


def test_arith_data_is_exact_and_deterministic():
  a = arith_data.make_splits(300, 50, seed=5, p_recheck=0.3)
  assert a == arith_data.make_splits(300, 50, seed=5, p_recheck=0.3)
  assert a != arith_data.make_splits(300, 50, seed=6, p_recheck=0.3)
  assert not {p["question"] for p in a["train"]} & {p["question"] for p in a["test"]}
  for p in a["train"] + a["test"]:
    expr = p["question"].split(": ")[1]
    value = int(expr[0])
    for op, d in zip(expr[1::2], expr[2::2]):
      value = value * int(d) if op == "*" else value + int(d)
    assert p["answer"] == str(value) and value < 100
    lines = p["reasoning"].strip().split("\n")
    assert lines[-1].endswith(f"={value}")
    steps = [ln for ln in lines if not ln.startswith("Wait, ")]
    assert len(steps) == p["steps"] == len(expr) // 2
    for i, ln in enumerate(lines):  # a re-check repeats the last step
      if ln.startswith("Wait, "):
        assert ln == "Wait, " + steps[len([x for x in lines[:i] if x in steps]) - 1]
  rechecks = sum(p["reasoning"].count("Wait, ") for p in a["train"])
  assert 0.2 < rechecks / sum(p["steps"] for p in a["train"]) < 0.5


def _sft_config(tmp_path, spm_model, epochs):
  """s1_sft_tiny over 40 records in tmp_path/train.jsonl, batch 16."""
  c = s1_sft_tiny.get_config()
  c.data.vocab = spm_model.path
  c.sft.train_file = _write(tmp_path / "train.jsonl", [dict(REC, id=f"r{i}") for i in range(40)])
  c.sft.epochs = epochs
  c.train.global_batch_size = 16
  return c


def test_sft_job_config_renders_and_counts_epochs(tmp_path, spm_model):
  c = _sft_config(tmp_path, spm_model, epochs=3)
  t = sft.prepare(c, str(tmp_path / "run"))
  assert t.train.num_steps == 9  # 3 epochs x ceil(40 / 16): each epoch ends with a step
  assert sft.sft_steps(1000, 5, 16) == 315  # the thesis's count (B.4.5)
  assert t.data.kind == "seqio" and not t.data.pack and t.data.eval == [] and not t.train.eval_every
  (entry,) = t.data.train
  assert entry["format"] == "prompt_response"
  rows = [json.loads(line) for line in open(entry["files"])]
  assert len(rows) == 40 and rows[0]["prompt"].endswith(st.THINK_START)
  c.train.seq_len = 16
  with pytest.raises(ValueError, match="record 'r0' is"):
    sft.prepare(c, str(tmp_path / "run2"))


def test_sft_rerun_with_another_source_stops_before_rendering(tmp_path, spm_model):
  from sbp_jax.errors import InputError
  c = _sft_config(tmp_path, spm_model, epochs=1)
  run = tmp_path / "run"
  (entry,) = sft.prepare(c, str(run)).data.train
  rendered = open(entry["files"]).read()
  assert json.load(open(run / "identity-s1_sft.json"))["inputs"]["sft.train_file"]
  assert sft.prepare(c, str(run)).data.train[0]["files"] == entry["files"]  # the same: reused
  # Other records, the same count (so the same train.num_steps): the train run's identity
  # alone would not see it, as its data are the rendered files inside the workdir.
  _write(tmp_path / "train.jsonl", [dict(REC, id=f"other{i}") for i in range(40)])
  with pytest.raises(InputError, match=r"input sft\.train_file .*train\.jsonl\) changed.*"
                     r"--overwrite"):
    sft.prepare(c, str(run))
  assert open(entry["files"]).read() == rendered
