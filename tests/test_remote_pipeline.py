"""SBP with corpus, tokenizer, data cache and workdir on a non-local file system.

TF's in-memory ram:// stands for gs:// (tests/ramfs.py: the same gfile backend).
Pair, synthesize, score quality, train a step with a checkpoint, resume, evaluate:
every file goes to ram:// except the orbax checkpoints. Orbax cannot write there:
it hands array data to TensorStore, whose kvstores are local files, GCS and S3;
any other scheme is taken as a local path ("ram://x" is normalised to the relative
"ram:/x" and refused as not absolute). So the checkpoints go to a local folder
(train.checkpoint_dir), and the test checks that nothing else reaches local disk.
"""

import os
import types

import numpy as np
import pytest

from sbp_jax import fileio
from tests.ramfs import use_ram

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "demo_corpus")


@pytest.mark.slow  # about two minutes on one CPU core (MiniLM, three compiled models)
def test_pipeline_with_remote_corpus_and_workdir(tmp_path, monkeypatch):
  if not os.path.exists(os.path.join(DEMO, "train.jsonl.gz")):
    pytest.skip("the demo corpus is not in this checkout")
  from configs import demo_realtext_cpu  # pylint: disable=g-import-not-at-top
  from configs.eval_demo import eval_section  # pylint: disable=g-import-not-at-top
  from sbp_jax.eval import jobs as eval_jobs  # pylint: disable=g-import-not-at-top
  from sbp_jax.sbp import experiment, joint  # pylint: disable=g-import-not-at-top
  from sbp_jax.train.loop import train  # pylint: disable=g-import-not-at-top

  root = use_ram(monkeypatch)
  local = tmp_path / "cwd"
  local.mkdir()
  monkeypatch.chdir(local)  # a ram:// path written with open()/os.* would land here as ram:/
  monkeypatch.setenv("SBP_DATA_CACHE", f"{root}/cache")  # seqio's TFRecord mirrors
  docs = list(fileio.read_jsonl(os.path.join(DEMO, "train.jsonl.gz")))[:40]
  corpus = f"{root}/corpus/train.jsonl"
  heldout = f"{root}/corpus/heldout.jsonl"
  spm = f"{root}/corpus/spm.model"
  fileio.write_jsonl(corpus, docs)
  fileio.write_jsonl(heldout, list(fileio.read_jsonl(os.path.join(DEMO, "heldout.jsonl.gz")))[:6])
  fileio.copy(os.path.join(DEMO, "spm_bpe_4096.model"), spm)
  work = f"{root}/run"

  c = demo_realtext_cpu.get_config("smoke")
  c.mesh.ici = c.synthesize.ici = (-1, 1, 1)  # the tests' 8 emulated devices
  c.tokenizer.path = c.data.vocab = c.pair.select.tokenizer.path = spm
  c.data.eval = [dict(name="heldout", format="text", files=heldout)]
  c.pair.shard_size = 20
  c.pair.search.k = 5
  c.pair.select.alpha = 0.3
  c.pair.random_pairs = 100
  pair = experiment.pair_stage(c, corpus, f"{work}/pair")
  assert pair["num_pairs"] > 0 and fileio.glob(pair["pairs_files"])

  c.synthesize.max_prompt_tokens = 64
  c.synthesize.max_new_tokens = 24
  c.synthesize.batch_size = 8
  c.synthesize.progress = False
  syn = experiment.synthesize_stage(c, "", corpus, 192, 96, f"{work}/synthesize")
  assert syn["shards"] == 2 and syn["kept_tokens"] >= 192
  seed_ids = {r["seed_id"] for p in fileio.glob(syn["files"]) for r in fileio.read_jsonl(p)}
  assert seed_ids <= {d["id"] for d in docs}

  c.quality.sample_docs = 8
  c.quality.duplicate_n = 8
  q = experiment.quality_stage(c, corpus, syn["files"], None, pair["pairs_files"],
                               f"{work}/quality")
  assert {"SBP synthetic", "Real data (D_pretrain)"} <= set(q["quality"])
  assert np.isfinite([q["b1"]["paired"], q["b1"]["random"]]).all()

  ckpt = str(tmp_path / "checkpoints")
  plan = types.SimpleNamespace(real_rate=0.8, synthetic_rate=0.2)  # synthetic lasts 2 steps
  t = joint.text_arm_config(c, joint.joint_sources(corpus, syn["files"], plan), 1)
  t.train.update(checkpoint_dir=ckpt, checkpoint_every=1, seq_len=64, global_batch_size=8,
                 eval_every=1, eval_steps=1, async_checkpoint=False, num_steps=2, run_steps=1)
  train(t, f"{work}/train")  # stops after step 1 (run_steps)
  t.train.run_steps = 0
  resumed = train(t, f"{work}/train")
  assert list(resumed["loss"]) == [2]  # the second run went on from the step-1 checkpoint
  hist = fileio.read_json(f"{work}/train/history.json")
  assert sorted(hist["loss"]) == ["1", "2"] and sorted(hist["eval"]) == ["1", "2"]
  assert fileio.find(f"{work}/train/tb", "events.out.tfevents.*")

  c.eval = eval_section([dict(name="heldout", label="Held-out", format="perplexity",
                              files=heldout)], checkpoint=ckpt)
  c.eval.prefix = "eos"
  res = eval_jobs.run_eval(c, f"{work}/eval")
  assert res["step"] == 2 and np.isfinite(res["tasks"]["heldout"]["metrics"]["perplexity"])
  assert fileio.read_json(f"{work}/eval/results.json")["step"] == 2

  assert os.listdir(local) == []  # no local ram:/ folder: every write went through the layer
  assert sorted(os.listdir(tmp_path)) == ["checkpoints", "cwd"]
