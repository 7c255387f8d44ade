"""Bad input through the job entry point (sbp_jax.main.cli), table-driven.

Each case runs in-process in a workdir that already holds files of an earlier run
and asserts: a non-zero exit status, one message naming the key or file, no
traceback, and that the earlier files are unchanged (a failing run neither writes
config.json nor touches outputs: inputs are read in full before the run identity is claimed).
"""

import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest

from sbp_jax import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A train run small enough to finish in seconds on the emulated 8-device mesh.
TINY_TRAIN = ["--config.train.num_steps=4", "--config.train.global_batch_size=8",
              "--config.train.seq_len=32", "--config.train.checkpoint_every=2",
              "--config.train.log_every=2", "--config.train.eval_every=0",
              "--config.train.async_checkpoint=False"]
TINY_GEN = ["--config.generate.max_new_tokens=4", "--config.generate.batch_size=2"]


def tiny_train(**over) -> list[str]:
  """TINY_TRAIN with some train fields replaced (a flag may be given only once)."""
  keep = [a for a in TINY_TRAIN if a.split("=")[0].rsplit(".", 1)[1] not in over]
  return keep + [f"--config.train.{k}={v}" for k, v in over.items()]


def cfg(name: str) -> str:
  return f"--config={ROOT}/configs/{name}.py"


def snapshot(d) -> dict:
  out = {}
  for base, _, files in os.walk(d):
    for f in files:
      p = os.path.join(base, f)
      with open(p, "rb") as fh:
        out[os.path.relpath(p, d)] = hashlib.sha1(fh.read()).hexdigest()
  return out


def run_cli(args, capsys) -> tuple[int, str]:
  capsys.readouterr()
  rc = main.cli(["sbp_jax", *args])
  return rc, capsys.readouterr().err


def earlier_workdir(tmp_path):
  """A workdir holding an earlier run's record, which a failing run must not touch."""
  w = tmp_path / "work"
  w.mkdir()
  (w / "config.json").write_text('{"earlier": "run"}\n')
  (w / "notes.txt").write_text("kept\n")
  return w


def write(path, text):
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)
  return str(path)


def prompts_file(tmp, rows=({"prompt": "Hello"},)):
  return write(tmp / "in" / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def safetensors_dir(tmp, truncate=True, bad_json=False):
  """A Llama-shaped HF directory whose weights file is cut short (or config.json broken)."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  d = tmp / "in" / "hf"
  d.mkdir(parents=True)
  conf = dict(model_type="llama", vocab_size=32, hidden_size=16, intermediate_size=32,
              num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
              max_position_embeddings=64, rms_norm_eps=1e-6)
  (d / "config.json").write_text("{broken" if bad_json else json.dumps(conf))
  save_file({"model.embed_tokens.weight": np.ones((32, 16), np.float32)},
            str(d / "model.safetensors"))
  if truncate:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:len(data) // 2])
  return str(d)


def gguf_file(tmp):
  """A GGUF file cut off in its tensor data."""
  import gguf  # pylint: disable=g-import-not-at-top
  p = tmp / "in" / "m.gguf"
  p.parent.mkdir(parents=True)
  w = gguf.GGUFWriter(str(p), "llama")
  w.add_block_count(1)
  w.add_tensor("token_embd.weight", np.ones((32, 16), np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  data = p.read_bytes()
  p.write_bytes(data[:len(data) - 1500])
  return str(p)


def questions(tmp, rows):
  return write(tmp / "in" / "q.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def docs_with_bad_line(tmp, name, bad, good=40):
  """A JSON-lines file of `good` documents, then `bad` (one raw line), then one more good
  one: a bad line deep inside an input, after many records a job could use first."""
  doc = lambda i: json.dumps({"id": f"d{i}", "text": f"document {i} " * 8}) + "\n"
  return write(tmp / "in" / name,
               "".join(doc(i) for i in range(good)) + bad + "\n" + doc(good))


def eval_config(tmp, task_file):
  """A config file: eval_demo on random weights with one perplexity task over task_file."""
  return "--config=" + write(tmp / "in" / "eval_one_task.py", (
      "from configs import eval_demo\n\n\ndef get_config():\n"
      "  c = eval_demo.get_config()\n  c.eval.checkpoint = ''\n"
      f"  c.eval.tasks = [dict(name='heldout', format='perplexity', files={task_file!r})]\n"
      "  return c\n"))


TINY_SYNTH = ["--config.synthesize.target_tokens=16", "--config.synthesize.tokens_per_shard=16",
              "--config.synthesize.max_new_tokens=8", "--config.synthesize.progress=False"]


# (id, args builder: tmp -> argv without --workdir, regex the message must match)
CASES = [
    # -- the command line ----------------------------------------------------------------
    ("override_typo", lambda t: [cfg("tiny_train"), "--config.train.num_stepz=5"],
     r"--config\.train\.num_stepz.*did you mean --config\.train\.num_steps"),
    ("override_unknown_section", lambda t: [cfg("tiny_train"), "--config.trian.lr=1"],
     r"trian"),
    ("override_wrong_type", lambda t: [cfg("tiny_train"), "--config.train.num_steps=many"],
     r"num_steps"),
    ("missing_config_flag", lambda t: [], r"--config"),
    ("config_file_missing", lambda t: [f"--config={t}/nope.py"], r"nope\.py"),
    ("unknown_flag", lambda t: [cfg("tiny_train"), "--wrkdir=x"], r"wrkdir"),
    ("unknown_job", lambda t: [cfg("tiny_train"), "--config.job=trian"], r"config\.job='trian'"),
    ("removed_budget_forcing_job", lambda t: [cfg("tiny_train"), "--config.job=budget_forcing"],
     r"budget_forcing.*budget_eval"),
    # -- train: numbers --------------------------------------------------------------------
    ("batch_zero", lambda t: [cfg("tiny_train"), "--config.train.global_batch_size=0"],
     r"train\.global_batch_size=0"),
    ("batch_negative", lambda t: [cfg("tiny_train"), "--config.train.global_batch_size=-8"],
     r"train\.global_batch_size=-8"),
    ("accum_zero", lambda t: [cfg("tiny_train"), "--config.train.grad_accum_steps=0"],
     r"train\.grad_accum_steps=0"),
    ("accum_not_dividing", lambda t: [cfg("tiny_train"), "--config.train.grad_accum_steps=3"],
     r"train\.global_batch_size=16 is not divisible by train\.grad_accum_steps=3"),
    ("batch_not_over_mesh", lambda t: [cfg("tiny_train"), "--config.train.global_batch_size=4"],
     r"train\.global_batch_size=4 .*8 batch shards"),
    ("microbatch_not_over_mesh", lambda t: [cfg("tiny_train"),
                                            "--config.train.grad_accum_steps=4"],
     r"train\.grad_accum_steps=4 = 4 rows .*8 batch shards"),
    ("seq_len_zero", lambda t: [cfg("tiny_train"), "--config.train.seq_len=0"],
     r"train\.seq_len=0"),
    ("seq_len_over_model", lambda t: [cfg("tiny_train"), "--config.train.seq_len=100000"],
     r"train\.seq_len=100000 exceeds model\.max_seq_len"),
    ("num_steps_zero", lambda t: [cfg("tiny_train"), "--config.train.num_steps=0"],
     r"train\.num_steps=0"),
    ("log_every_zero", lambda t: [cfg("tiny_train"), "--config.train.log_every=0"],
     r"train\.log_every=0"),
    ("checkpoint_every_zero", lambda t: [cfg("tiny_train"), "--config.train.checkpoint_every=0"],
     r"train\.checkpoint_every=0"),
    ("keep_checkpoints_zero", lambda t: [cfg("tiny_train"), "--config.train.keep_checkpoints=0"],
     r"train\.keep_checkpoints=0"),
    ("eval_every_negative", lambda t: [cfg("tiny_train"), "--config.train.eval_every=-1"],
     r"train\.eval_every=-1"),
    ("eval_steps_zero", lambda t: [cfg("tiny_train"), "--config.train.eval_steps=0"],
     r"train\.eval_steps=0"),
    ("eval_batch_not_over_mesh", lambda t: [cfg("tiny_train"),
                                            "--config.train.eval_batch_size=3"],
     r"train\.eval_batch_size=3"),
    ("lr_nan", lambda t: [cfg("tiny_train"), "--config.train.lr=nan"], r"train\.lr=nan"),
    ("lr_negative", lambda t: [cfg("tiny_train"), "--config.train.lr=-0.1"], r"train\.lr=-0\.1"),
    ("weight_decay_inf", lambda t: [cfg("tiny_train"), "--config.train.weight_decay=inf"],
     r"train\.weight_decay=inf"),
    ("empty_eval_split", lambda t: [cfg("tiny_train"), *tiny_train(eval_every=2),
                                    "--config.data.eval_fraction=0.0"],
     r"train\.eval_every=2 but the eval split .* is (empty|unusable)"),
    ("init_from_missing", lambda t: [cfg("tiny_train"), f"--config.train.init_from={t}/nockpt"],
     r"train\.init_from=.*nockpt.* holds no checkpoint"),
    ("data_kind_unknown", lambda t: [cfg("tiny_train"), "--config.data.kind=textbytes"],
     r"data\.kind='textbytes'"),
    # -- generate ----------------------------------------------------------------------
    ("prompts_unset", lambda t: [cfg("generate_tiny")], r"generate\.prompts is empty"),
    ("prompts_missing", lambda t: [cfg("generate_tiny"), f"--config.generate.prompts={t}/no.jsonl"],
     r"no\.jsonl does not exist"),
    ("prompts_bad_json", lambda t: [cfg("generate_tiny"), "--config.generate.prompts=" +
                                    write(t / "in" / "p.jsonl", '{"prompt": "a"\n')],
     r"p\.jsonl:1: not valid JSON"),
    ("prompts_missing_field", lambda t: [cfg("generate_tiny"), "--config.generate.prompts=" +
                                         prompts_file(t, [{"text": "a"}])],
     r"p\.jsonl:1: needs a string field 'prompt'"),
    ("generate_batch_zero", lambda t: [cfg("generate_tiny"), "--config.generate.batch_size=0",
                                       "--config.generate.prompts=" + prompts_file(t)],
     r"generate\.batch_size=0"),
    ("generate_shard_zero", lambda t: [cfg("generate_tiny"), "--config.generate.shard_size=0",
                                       "--config.generate.prompts=" + prompts_file(t)],
     r"generate\.shard_size=0"),
    ("max_new_negative", lambda t: [cfg("generate_tiny"), "--config.generate.max_new_tokens=-1",
                                    "--config.generate.prompts=" + prompts_file(t)],
     r"generate\.max_new_tokens=-1"),
    ("temperature_negative", lambda t: [cfg("generate_tiny"), "--config.generate.temperature=-1",
                                        "--config.generate.prompts=" + prompts_file(t)],
     r"temperature=-1"),
    ("top_p_zero", lambda t: [cfg("generate_tiny"), "--config.generate.top_p=0",
                              "--config.generate.prompts=" + prompts_file(t)], r"top_p=0"),
    ("generate_checkpoint_missing", lambda t: [
        cfg("generate_tiny"), "--config.generate.prompts=" + prompts_file(t),
        f"--config.generate.checkpoint={t}/typo/checkpoints"],
     r"generate\.checkpoint=.*typo/checkpoints.* holds no checkpoint"),
    ("model_json_missing", lambda t: [cfg("generate_tiny"), "--config.generate.prompts=" +
                                      prompts_file(t), f"--config.generate.model_json={t}/m.json"],
     r"generate\.model_json=.*m\.json.* does not exist"),
    ("tokenizer_kind_unknown", lambda t: [cfg("generate_tiny"), "--config.tokenizer.kind=bpe",
                                          "--config.generate.prompts=" + prompts_file(t)],
     r"tokenizer\.kind='bpe'"),
    ("sentencepiece_garbage", lambda t: [
        cfg("generate_tiny"), "--config.tokenizer.kind=sentencepiece",
        "--config.tokenizer.path=" + write(t / "in" / "spm.model", "not a model"),
        "--config.generate.prompts=" + prompts_file(t)], r"SentencePiece|spm\.model"),
    ("prompt_longer_than_context", lambda t: [
        cfg("generate_tiny"), *TINY_GEN, "--config.model.max_seq_len=16",
        "--config.generate.prompts=" + prompts_file(t, [{"prompt": "x" * 40}])],
     r"generate\.prompts row 0: a prompt of \d+ tokens plus 4 new tokens exceeds .* 16.*"
     r"truncate_prompts"),
    # -- budget_eval (and its budget-forcing preset) -----------------------------------------
    ("budget_setting_negative", lambda t: [cfg("budget_forcing_tiny"),
                                           "--config.budget_eval.sequential.settings=max=-1"],
     r"'max=-1'.*max=N"),
    ("budget_setting_word", lambda t: [cfg("budget_forcing_tiny"),
                                       "--config.budget_eval.sequential.settings=max=ten"],
     r"'max=ten'"),
    ("budget_setting_key", lambda t: [cfg("budget_forcing_tiny"),
                                      "--config.budget_eval.sequential.settings=maxi=4"],
     r"'maxi=4'"),
    ("budget_min_over_max", lambda t: [
        cfg("s1_budget_eval"), "--config.budget_eval.parallel.setting=min=10,max=5"],
     r"min_thinking=10 exceeds max_thinking=5"),
    ("thinking_cap_zero", lambda t: [cfg("budget_forcing_tiny"),
                                     "--config.budget_eval.thinking_cap=0"],
     r"budget_eval\.thinking_cap=0"),
    ("answer_tokens_zero", lambda t: [cfg("budget_forcing_tiny"),
                                      "--config.budget_eval.max_answer_tokens=0"],
     r"budget_eval\.max_answer_tokens=0"),
    ("budget_batch_zero", lambda t: [cfg("budget_forcing_tiny"),
                                     "--config.budget_eval.batch_size=0"],
     r"budget_eval\.batch_size=0"),
    ("parallel_ns_zero", lambda t: [cfg("s1_budget_eval"), "--config.budget_eval.parallel.ns=(0,)",
                                    "--config.budget_eval.questions=" + questions(
                                        t, [{"question": "1+1", "answer": "2"}])],
     r"budget_eval\.parallel\.ns entry=0"),
    ("questions_missing", lambda t: [cfg("s1_budget_eval"),
                                     f"--config.budget_eval.questions={t}/q.jsonl"],
     r"budget_eval\.questions=.*q\.jsonl.* does not exist"),
    ("questions_empty", lambda t: [cfg("s1_budget_eval"),
                                   "--config.budget_eval.questions=" + questions(t, [])],
     r"holds no questions"),
    ("questions_mixed_gold", lambda t: [
        cfg("s1_budget_eval"), "--config.budget_eval.questions=" + questions(
            t, [{"question": "1+1", "answer": "2"}, {"question": "2+2"}])],
     r"q\.jsonl:2: needs a string 'question' and a gold 'answer'"),
    ("vote_without_gold", lambda t: [cfg("s1_budget_eval"), "--config.budget_eval.questions=" +
                                     questions(t, [{"question": "1+1"}])],
     r"budget_eval\.parallel\.ns is set, but majority voting needs a gold answer"),
    ("template_unknown", lambda t: [cfg("budget_forcing_tiny"),
                                    "--config.budget_eval.template.name=qwen"],
     r"template\.name='qwen'"),
    ("budget_checkpoint_missing", lambda t: [cfg("budget_forcing_tiny"),
                                             f"--config.generate.checkpoint={t}/none"],
     r"generate\.checkpoint=.*none.* holds no checkpoint"),
    # -- imports -------------------------------------------------------------------------
    ("import_hf_source_missing", lambda t: [cfg("import_hf"), f"--config.convert.source={t}/hf"],
     r"convert\.source=.*hf.* is not a directory"),
    ("safetensors_truncated", lambda t: [cfg("import_hf"),
                                         "--config.convert.source=" + safetensors_dir(t)],
     r"model\.safetensors is not a readable safetensors file"),
    ("hf_config_bad_json", lambda t: [cfg("import_hf"), "--config.convert.source=" +
                                      safetensors_dir(t, truncate=False, bad_json=True)],
     r"config\.json: not valid JSON"),
    ("gguf_source_missing", lambda t: [cfg("import_smollm2"), f"--config.convert.source={t}/x.gguf"],
     r"x\.gguf does not exist"),
    ("gguf_truncated", lambda t: [cfg("import_smollm2"), "--config.convert.source=" + gguf_file(t)],
     r"m\.gguf(: tensor .token_embd\.weight.| is not a readable GGUF file).*truncated"),
    # -- pair ------------------------------------------------------------------------------
    ("pair_corpus_missing", lambda t: [cfg("sbp_pair_demo"), f"--config.pair.corpus={t}/c.jsonl"],
     r"pair\.corpus: .*c\.jsonl.* matches no file"),
    ("pair_runner_unknown", lambda t: [cfg("sbp_pair_demo"), "--config.pair.runner=spark"],
     r"pair\.runner='spark'"),
    ("pair_embedder_unknown", lambda t: [cfg("sbp_pair_demo"), "--config.pair.embedder.kind=bert"],
     r"pair\.embedder\.kind='bert'"),
    ("pair_shard_size_zero", lambda t: [cfg("sbp_pair_demo"), "--config.pair.shard_size=0"],
     r"pair\.shard_size=0"),
    ("pair_k_zero", lambda t: [cfg("sbp_pair_demo"), "--config.pair.search.k=0"],
     r"pair\.search\.k=0"),
    ("pair_alpha_nan", lambda t: [cfg("sbp_pair_demo"), "--config.pair.select.alpha=nan"],
     r"pair\.select\.alpha=nan"),
    # a bad record deep in the corpus is found by the check before the claim, not by the split
    ("pair_corpus_bad_json_deep", lambda t: [cfg("sbp_pair_demo"), "--config.pair.corpus=" +
                                             docs_with_bad_line(t, "c.jsonl", '{"text": "cut')],
     r"c\.jsonl:41: not valid JSON"),
    ("pair_corpus_no_text_deep", lambda t: [cfg("sbp_pair_demo"), "--config.pair.corpus=" +
                                            docs_with_bad_line(t, "c.jsonl", '{"title": "x"}')],
     r"c\.jsonl:41: needs a string field 'text'.*pair\.text_field"),
    ("pair_corpus_empty", lambda t: [cfg("sbp_pair_demo"),
                                     "--config.pair.corpus=" + write(t / "in" / "c.jsonl", "\n")],
     r"pair\.corpus=.*c\.jsonl.* holds no documents"),
    # -- synthesize -------------------------------------------------------------------------
    ("synth_seed_files_unset", lambda t: [cfg("sbp_synthesize_tiny")],
     r"synthesize\.seed_files is empty; point it at"),
    ("synth_seed_files_missing", lambda t: [cfg("sbp_synthesize_tiny"),
                                            f"--config.synthesize.seed_files={t}/s*.jsonl"],
     r"synthesize\.seed_files: .*s\*\.jsonl.* matches no file"),
    ("synth_target_zero", lambda t: [cfg("sbp_synthesize_tiny"),
                                     "--config.synthesize.target_tokens=0"],
     r"synthesize\.target_tokens=0"),
    ("synth_batch_zero", lambda t: [cfg("sbp_synthesize_tiny"), "--config.synthesize.batch_size=0"],
     r"synthesize\.batch_size=0"),
    ("synth_temperature_negative", lambda t: [cfg("sbp_synthesize_tiny"),
                                              "--config.synthesize.temperature=-1"],
     r"synthesize\.temperature=-1"),
    ("synth_top_p_over_one", lambda t: [cfg("sbp_synthesize_tiny"), "--config.synthesize.top_p=2",
                                        "--config.synthesize.seed_files=" + prompts_file(t)],
     r"synthesize\.top_p=2"),
    ("synth_checkpoint_missing", lambda t: [
        cfg("sbp_synthesize_tiny"), "--config.synthesize.seed_files=" + prompts_file(t),
        f"--config.synthesize.checkpoint={t}/typo/checkpoints"],
     r"synthesize\.checkpoint=.*typo/checkpoints.* holds no checkpoint"),
    ("synth_vocab_too_small", lambda t: [cfg("sbp_synthesize_tiny"), "--config.model.vocab_size=64",
                                         "--config.synthesize.seed_files=" + prompts_file(t)],
     r"tokenizer has \d+ ids but the model's vocab_size is 64"),
    ("synth_seed_bad_json_deep", lambda t: [
        cfg("sbp_synthesize_tiny"), *TINY_SYNTH,
        "--config.synthesize.seed_files=" + docs_with_bad_line(t, "s.jsonl", "not json")],
     r"s\.jsonl:41: not valid JSON"),
    ("synth_seed_no_text_deep", lambda t: [
        cfg("sbp_synthesize_tiny"), *TINY_SYNTH,
        "--config.synthesize.seed_files=" + docs_with_bad_line(t, "s.jsonl", '{"text": 3}')],
     r"s\.jsonl:41: needs a string field 'text', but it is an int.*synthesize\.seed_files"),
    ("synth_seed_files_empty", lambda t: [cfg("sbp_synthesize_tiny"), *TINY_SYNTH,
                                          "--config.synthesize.seed_files=" +
                                          write(t / "in" / "s.jsonl", "")],
     r"synthesize\.seed_files=.*s\.jsonl.* holds no documents"),
    ("synth_new_tokens_fill_context", lambda t: [
        cfg("sbp_synthesize_tiny"), "--config.synthesize.max_new_tokens=512",
        "--config.synthesize.seed_files=" + prompts_file(t)],
     r"synthesize\.max_new_tokens=512 leaves no room for a seed document .* 512 "
     r"\(model\.max_seq_len"),
    # -- eval --------------------------------------------------------------------------------
    ("eval_checkpoint_missing", lambda t: [cfg("eval_demo"),
                                           f"--config.eval.checkpoint={t}/typo/checkpoints"],
     r"eval\.checkpoint=.*typo/checkpoints.* holds no checkpoint"),
    ("eval_prefix_out_of_vocab", lambda t: [cfg("eval_demo"), "--config.eval.prefix=99999"],
     r"eval\.prefix='99999'"),
    ("eval_model_json_missing", lambda t: [cfg("eval_demo"), f"--config.eval.model_json={t}/m.json"],
     r"eval\.model_json.*m\.json"),
    ("eval_task_bad_json_deep", lambda t: [
        eval_config(t, docs_with_bad_line(t, "task.jsonl", '{"text": '))],
     r"task\.jsonl:41: not valid JSON"),
    ("eval_task_bad_record_deep", lambda t: [
        eval_config(t, docs_with_bad_line(t, "task.jsonl", '{"text": ""}'))],
     r"task\.jsonl:41: perplexity record needs a non-empty string field 'text'"),
    # -- budget_eval: the longest decode of a question must fit the context -------------------
    ("budget_decode_over_context", lambda t: [cfg("budget_forcing_tiny"),
                                              "--config.model.max_seq_len=64"],
     r"budget_eval question '0': a prompt of \d+ tokens plus \d+ new tokens exceeds the "
     r"model's context of 64.*thinking_cap.*max_answer_tokens"),
]


@pytest.mark.parametrize("name,args,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_message(name, args, pattern, tmp_path, capsys):
  del name
  work = earlier_workdir(tmp_path)
  before = snapshot(work)
  argv = args(tmp_path)
  rc, err = run_cli(argv + [f"--workdir={work}"], capsys)
  assert rc != 0
  assert "Traceback" not in err, err
  assert re.search(pattern, err, re.S), err
  line = [l for l in err.splitlines() if l.startswith("sbp_jax:")]
  assert len(line) == 1, err  # one paragraph
  assert snapshot(work) == before
  assert not os.path.exists(tmp_path / "typo") and not os.path.exists(tmp_path / "nockpt")


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("SBP_JAX_DEBUG", "1")
  rc, err = run_cli([cfg("tiny_train"), "--config.train.log_every=0",
                     f"--workdir={tmp_path}/w"], capsys)
  assert rc == 1 and "Traceback" in err and "train.log_every=0" in err


# -- cases that need an earlier run in the workdir -----------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 4-step tiny train run (checkpoints at steps 2 and 4)."""
  w = tmp_path_factory.mktemp("trained") / "run"
  assert main.cli(["sbp_jax", cfg("tiny_train"), *TINY_TRAIN, f"--workdir={w}"]) == 0
  return w


def _copy(trained, tmp_path):
  w = tmp_path / "run"
  shutil.copytree(trained, w)
  return w


RUN_CASES = [
    ("changed_lr", [cfg("tiny_train"), *TINY_TRAIN, "--config.train.lr=0.001"],
     r"train\.lr: 0\.003 -> 0\.001.*new --workdir.*--overwrite"),
    ("changed_model", [cfg("tiny_train"), *TINY_TRAIN, "--config.model.d_model=32"],
     r"model\.d_model: 64 -> 32"),
    ("changed_data", [cfg("tiny_train"), *TINY_TRAIN, "--config.data.text=other text " * 20],
     r"data\.text"),
    ("changed_seed", [cfg("tiny_train"), *TINY_TRAIN, "--config.seed=1"], r"seed: 0 -> 1"),
    ("changed_steps", [cfg("tiny_train"), *tiny_train(num_steps=6)],
     r"train\.num_steps: 4 -> 6"),
    ("bad_value_on_existing_run", [cfg("tiny_train"), *tiny_train(keep_checkpoints=0)],
     r"train\.keep_checkpoints=0"),
    ("typo_on_existing_run", [cfg("tiny_train"), *TINY_TRAIN, "--config.train.lrr=1"],
     r"train\.lrr"),
]


@pytest.mark.parametrize("name,args,pattern", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_existing_run_is_never_changed(name, args, pattern, trained, tmp_path, capsys):
  del name
  w = _copy(trained, tmp_path)
  before = snapshot(w)
  rc, err = run_cli(args + [f"--workdir={w}"], capsys)
  assert rc != 0 and "Traceback" not in err, err
  assert re.search(pattern, err, re.S), err
  assert snapshot(w) == before


def test_same_identity_resumes_and_overwrite_recomputes(trained, tmp_path, capsys):
  w = _copy(trained, tmp_path)
  before = snapshot(w / "checkpoints")
  rc, err = run_cli([cfg("tiny_train"), *tiny_train(log_every=1),
                     f"--workdir={w}"], capsys)  # cadence is not identity
  assert rc == 0, err
  assert snapshot(w / "checkpoints") == before  # finished: nothing retrained
  rc, err = run_cli([cfg("tiny_train"), *TINY_TRAIN, "--config.train.lr=0.001", "--overwrite",
                     f"--workdir={w}"], capsys)
  assert rc == 0, err
  assert json.load(open(w / "identity-train.json"))["config"]["train.lr"] == 0.001
  assert json.load(open(w / "config.json"))["train"]["lr"] == 0.001
  assert snapshot(w / "checkpoints") != before


def test_unreadable_identity_is_named_and_overwrite_recomputes(trained, tmp_path, capsys):
  w = _copy(trained, tmp_path)
  (w / "identity-train.json").write_text('{"job": "train", "config": {')  # cut short
  before = snapshot(w)
  rc, err = run_cli([cfg("tiny_train"), *TINY_TRAIN, f"--workdir={w}"], capsys)
  assert rc == 1 and "Traceback" not in err, err
  assert re.search(r"identity-train\.json is not valid JSON.*--overwrite", err), err
  assert snapshot(w) == before
  rc, err = run_cli([cfg("tiny_train"), *TINY_TRAIN, "--overwrite", f"--workdir={w}"], capsys)
  assert rc == 0, err
  assert json.load(open(w / "identity-train.json"))["job"] == "train"


def test_workdir_that_is_a_file_is_named(tmp_path, capsys):
  f = tmp_path / "work"
  f.write_text("a file\n")
  rc, err = run_cli([cfg("generate_tiny"), *TINY_GEN, "--config.generate.prompts=" +
                     prompts_file(tmp_path), f"--workdir={f}"], capsys)
  assert rc == 1 and "Traceback" not in err, err
  assert f"--workdir={f} is a file" in err and f.read_text() == "a file\n"


def test_import_rerun_from_another_source_stops(tmp_path, capsys):
  from tests import hf_fixtures as hx  # pylint: disable=g-import-not-at-top
  tok = hx.llama3_tokenizer(str(tmp_path / "tok"))
  a = hx.tiny_checkpoint(str(tmp_path / "a"), "llama", tok)
  b = hx.tiny_checkpoint(str(tmp_path / "b"), "llama", tok, hidden_size=64, head_dim=16)
  w = tmp_path / "imported"
  imp = lambda src, *more: run_cli([cfg("import_hf"), f"--config.convert.source={src}",
                                    "--config.convert.dtype=float32", *more,
                                    f"--workdir={w}"], capsys)
  assert imp(a)[0] == 0
  before = snapshot(w)
  assert imp(a)[0] == 0 and snapshot(w) == before  # the same source: reused
  rc, err = imp(b)
  assert rc == 1 and re.search(r"convert\.source: .*a' -> .*b'.*--overwrite", err), err
  assert snapshot(w) == before
  shutil.rmtree(a)  # the same path, re-exported with another shape
  hx.tiny_checkpoint(a, "llama", tok, hidden_size=64, head_dim=16)
  rc, err = imp(a)
  assert rc == 1 and re.search(r"input convert\.source \(.*a\) changed", err), err
  assert snapshot(w) == before
  assert imp(a, "--overwrite")[0] == 0
  assert json.load(open(w / "model.json"))["d_model"] == 64


def test_another_jobs_config_record_is_never_replaced(tmp_path, capsys):
  from tests import hf_fixtures as hx  # pylint: disable=g-import-not-at-top
  tok = hx.llama3_tokenizer(str(tmp_path / "tok"))
  src = hx.tiny_checkpoint(str(tmp_path / "a"), "llama", tok)
  w = tmp_path / "w"
  w.mkdir()
  theirs = '{"job": "train", "train": {"lr": 0.003}}\n'
  (w / "config.json").write_text(theirs)
  args = [cfg("import_hf"), f"--config.convert.source={src}", "--config.convert.dtype=float32",
          f"--workdir={w}"]
  for _ in range(2):  # the import, then a re-run that reuses it
    rc, err = run_cli(args, capsys)
    assert rc == 0, err
    assert (w / "config.json").read_text() == theirs
    own = json.load(open(w / "config-import_hf.json"))
    assert own["job"] == "import_hf" and own["convert"]["source"] == src


@pytest.mark.slow
def test_budget_eval_rerun_with_changed_settings_stops(tmp_path, capsys):
  w = tmp_path / "bf"
  common = [cfg("budget_forcing_tiny"), "--config.budget_eval.thinking_cap=8",
            "--config.budget_eval.max_answer_tokens=4"]
  assert run_cli(common + ["--config.budget_eval.sequential.settings=max=4",
                           f"--workdir={w}"], capsys)[0] == 0
  before = snapshot(w)
  rc, err = run_cli(common + ["--config.budget_eval.sequential.settings=max=2",
                              f"--workdir={w}"], capsys)
  assert rc == 1 and re.search(r"budget_eval\.sequential\.settings: .*max=4.* -> .*max=2.*"
                               r"--overwrite", err), err
  assert snapshot(w) == before


def test_damaged_newest_checkpoint_falls_back(trained, tmp_path, capsys, caplog):
  w = _copy(trained, tmp_path)
  for base, _, files in os.walk(w / "checkpoints" / "4" / "state"):
    for f in files:  # truncate every array file of the newest step
      p = os.path.join(base, f)
      if os.path.getsize(p) > 64:
        with open(p, "r+b") as fh:
          fh.truncate(16)
  rc, err = run_cli([cfg("tiny_train"), *TINY_TRAIN, f"--workdir={w}"], capsys)
  assert rc == 0, err
  assert "checkpoint step 4" in caplog.text and "damaged" in caplog.text
  assert os.path.isdir(w / "checkpoints" / "damaged-4")
  assert os.path.isdir(w / "checkpoints" / "4")  # retrained from step 2 and saved again


def test_outputs_from_before_identities_are_never_adopted(trained, tmp_path, capsys):
  w = _copy(trained, tmp_path)
  os.remove(w / "identity-train.json")  # as a run from before identities were recorded
  before = snapshot(w)
  rc, err = run_cli([cfg("tiny_train"), *TINY_TRAIN, f"--workdir={w}"], capsys)
  assert rc == 1 and "Traceback" not in err, err
  assert re.search(r"train outputs \(checkpoints, history\.json.*\) written before run "
                   r"identities were recorded.*new --workdir.*--overwrite", err), err
  assert snapshot(w) == before


def test_checkpoint_of_another_shape_lists_the_params(trained, tmp_path, capsys):
  before = snapshot(trained / "checkpoints")
  rc, err = run_cli([cfg("tiny_train"), *TINY_TRAIN, "--config.model.d_ffn=96",
                     f"--config.train.init_from={trained}/checkpoints",
                     f"--workdir={tmp_path}/w"], capsys)
  assert rc == 1 and "Traceback" not in err, err
  assert re.search(r"checkpoint step 4 .* does not match the config's model: .*checkpoint "
                   r"\(.*\) vs config \(.*96", err), err
  assert "strict" not in err
  assert snapshot(trained / "checkpoints") == before


def test_non_finite_loss_stops_and_keeps_the_finite_checkpoint(tmp_path, capsys):
  w = tmp_path / "run"
  rc, err = run_cli([cfg("tiny_train"), *tiny_train(num_steps=6, checkpoint_every=1, log_every=1,
                                                     lr=1e30, warmup_frac=0.0, clip_norm=0.0),
                     f"--workdir={w}"], capsys)
  assert rc == 1 and "Traceback" not in err, err
  m = re.search(r"training stopped at step (\d+): loss=(\S+), grad_norm=(\S+)", err)
  assert m, err
  bad = int(m.group(1))
  steps = sorted(int(s) for s in os.listdir(w / "checkpoints") if s.isdigit())
  assert steps and max(steps) < bad  # no checkpoint of the non-finite step or later
  hist = json.load(open(w / "history.json"))["loss"]
  assert all(np.isfinite(v) for v in hist.values()) and max(map(int, hist)) < bad


def test_mistyped_input_path_is_never_created(tmp_path, capsys):
  rc, _ = run_cli([cfg("tiny_train"), *TINY_TRAIN, f"--config.train.init_from={tmp_path}/tpyo",
                   f"--workdir={tmp_path}/w"], capsys)
  assert rc == 1 and not os.path.exists(tmp_path / "tpyo")


@pytest.mark.slow
def test_generate_rerun_with_changed_settings_stops(tmp_path, capsys):
  w = tmp_path / "gen"
  common = [cfg("generate_tiny"), *TINY_GEN, "--config.generate.prompts=" + prompts_file(
      tmp_path, [{"prompt": "Hello"}, {"prompt": "x" * 30}]), "--config.model.max_seq_len=20",
            "--config.generate.truncate_prompts=True"]
  assert run_cli(common + [f"--workdir={w}"], capsys)[0] == 0
  rows = [json.loads(l) for l in open(w / "outputs" / "part-00000.jsonl")]
  assert "prompt_truncated_tokens" not in rows[0]
  from sbp_jax.generate.text_codec import ByteTokenizer  # pylint: disable=g-import-not-at-top
  n = len(ByteTokenizer().encode("x" * 30))
  assert rows[1]["prompt_truncated_tokens"] == n - (20 - 4)  # recorded in the output
  before = snapshot(w)
  rc, err = run_cli(common + ["--config.generate.temperature=0.5", f"--workdir={w}"], capsys)
  assert rc == 1 and re.search(r"generate\.temperature: 1\.0 -> 0\.5", err), err
  assert snapshot(w) == before
  with open(tmp_path / "in" / "p.jsonl", "a") as f:
    f.write('{"prompt": "more"}\n')  # the prompts file changed since the run
  rc, err = run_cli(common + [f"--workdir={w}"], capsys)
  assert rc == 1 and re.search(r"input generate\.prompts .*p\.jsonl\) changed", err), err
  assert snapshot(w) == before


def test_http_endpoint_html_and_error_bodies_name_the_url():
  import http.server  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  from sbp_jax import errors  # pylint: disable=g-import-not-at-top
  from sbp_jax.entigraph.backends import GenerationError, GenParams, HTTPGenerator  # pylint: disable=g-import-not-at-top
  bodies = iter([b"<html><body>Not an API</body></html>", b'{"error": {"message": "no model"}}'])

  class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # pylint: disable=invalid-name
      self.rfile.read(int(self.headers["Content-Length"]))
      body = next(bodies)
      self.send_response(200)
      self.send_header("Content-Length", str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def log_message(self, *a):
      pass

  srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
  threading.Thread(target=srv.serve_forever, daemon=True).start()
  try:
    gen = HTTPGenerator(f"http://127.0.0.1:{srv.server_port}/v1", "m", max_retries=0)
    params = GenParams(max_tokens=4, temperature=0.0, top_p=1.0, seed=0)
    for want in (r"non-JSON .*Not an API.*base_url", r"without choices: .*no model"):
      with pytest.raises(GenerationError, match=want) as e:
        gen.complete(["hi"], params)
      assert f"127.0.0.1:{srv.server_port}/v1/completions" in errors.explain(e.value)
  finally:
    srv.shutdown()


def test_max_zero_and_multi_token_delimiter_parse():
  from sbp_jax.generate import budget_forcing as bf  # pylint: disable=g-import-not-at-top
  bc = bf.BudgetConfig(**bf.parse_setting("max=0"))
  assert bf.budget_of(bc) == 0  # zero thinking tokens, not unlimited
  assert bf.budget_of(bf.BudgetConfig()) == bf.BudgetConfig().thinking_cap
  with pytest.raises(ValueError, match="max=N"):
    bf.parse_setting("max=-3")
