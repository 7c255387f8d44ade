"""The concept testbed, the seed gate, report.json and the compute-matched guard."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sbp_jax.sbp import concepts, experiment, seed_gate
from sbp_jax.sbp import effect_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "configs/demo_cpu.py:smoke"


def _main(work, *flags, check=True):
  """The job in a fresh process on one CPU device, as the README's command runs it."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  return subprocess.run([sys.executable, "-m", "sbp_jax.main", f"--config={SMOKE}",
                         f"--workdir={work}", *flags], cwd=ROOT, env=env, check=check,
                        capture_output=not check, text=True)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  work = str(tmp_path_factory.mktemp("concepts") / "run")
  _main(work)
  return work


def test_concept_corpus_splits_share_concepts(tmp_path):
  kw = dict(num_concepts=5, pretrain_per_concept=2, oracle_per_concept=6, heldout_per_concept=1,
            facts_per_doc=3, seed=0)
  paths = concepts.write_corpus(str(tmp_path / "a"), **kw)
  rows = {k: [json.loads(l) for l in open(p)] for k, p in paths.items()}
  assert [len(rows[k]) for k in ("d_pretrain", "oracle", "heldout")] == [10, 30, 5]
  assert {r["concept"] for r in rows["heldout"]} == {r["concept"] for r in rows["d_pretrain"]}
  names = {c["name"]: c for c in concepts.make_concepts(5, 0)}
  for r in rows["d_pretrain"]:  # every fact a document states is its concept's
    name = r["text"].split(" is a ")[0]
    c = names[name]
    stated = [a for a in c["facts"] if f" {a} " in r["text"] or f" {a}," in r["text"]
              or r["text"].endswith(f" {a}.") or f" {a}. " in r["text"]]
    assert len(stated) == 3 and all(f" {c['facts'][a]}" in r["text"] for a in stated)
  cs = concepts.make_concepts(5, 0)
  fid = concepts.fact_accuracy([r["text"] for r in rows["heldout"]],
                               [cs[r["concept"]] for r in rows["heldout"]])
  assert fid == dict(docs=5, names_seed=1.0, facts_stated=15, facts_right=1.0)
  first = rows["heldout"][0]
  wrong = concepts.fact_accuracy([first["text"]], [cs[1 - first["concept"] % 2]])
  assert wrong["names_seed"] == 0.0
  again = concepts.write_corpus(str(tmp_path / "b"), **kw)  # reproducible
  assert all(open(again[k]).read() == open(p).read() for k, p in paths.items())
  control = concepts.write_corpus(str(tmp_path / "c"), shared_concepts=False, **kw)
  seen = [json.loads(l)["concept"] for p in control.values() for l in open(p)]
  assert len(seen) == len(set(seen)) == 45  # no two documents share a concept


def test_share_of_gain():
  assert effect_report.share_of_gain(10.0, 8.0, 6.0) == pytest.approx(0.5)
  assert effect_report.share_of_gain(10.0, 9.0, 11.0) is None  # the oracle did not improve


def test_gate_split_and_shuffle():
  rows = [dict(d1=f"a{i}", d2=f"b{i}") for i in range(40)]
  tune, gate = seed_gate.split_pairs(rows, 64, 0)
  assert len(gate) == 10 and len(tune) == 30  # at most a quarter held out
  assert not {r["d1"] for r in tune} & {r["d1"] for r in gate}
  sh = seed_gate.shuffled_seeds(gate, 0)
  assert [r["d2"] for r in sh] == [r["d2"] for r in gate]
  assert all(a["d1"] != b["d1"] for a, b in zip(sh, gate))
  with pytest.raises(seed_gate.SeedGateError, match="min_seed_nll_gap"):
    seed_gate.check(dict(true=2.0, shuffled=2.01, gap=0.01), 0.1)
  seed_gate.check(dict(true=1.0, shuffled=1.5, gap=0.5), 0.1)


def test_synthetic_supply_must_cover_the_joint_arm():
  with pytest.raises(experiment.SyntheticDataShort, match="compute-matched"):
    experiment.check_synthetic_supply(dict(kept_tokens=900, kept=10), 1000)
  experiment.check_synthetic_supply(dict(kept_tokens=990, kept=10), 1000)


def test_report_json_has_every_field(smoke_run):
  rep = json.load(open(os.path.join(smoke_run, "report.json")))
  assert set(rep["heldout_perplexity"]) == {"baseline", "sbp", "oracle"}
  assert all(np.isfinite(v) and v > 1 for v in rep["heldout_perplexity"].values())
  p = rep["heldout_perplexity"]
  share = effect_report.share_of_gain(p["baseline"], p["sbp"], p["oracle"])
  assert rep["share_of_oracle_gain_heldout"] == share
  assert np.isfinite(rep["seed_nll_gap"])
  assert set(rep["seed_similarity"]) == {"paired", "random_docs", "sbp", "random_pair_synth"}
  assert all(np.isfinite(v) for v in rep["seed_similarity"].values())
  assert rep["pair_concept_purity"] > 0.9  # the pairing embedder finds same-concept documents
  # Training dynamics: each arm evaluated eval_points times, in tokens-seen order.
  for arm, pts in rep["dynamics"].items():
    assert len(pts) == 10 and pts[-1]["perplexity"] == p[arm], arm
    assert [q["tokens"] for q in pts] == sorted(q["tokens"] for q in pts)
  assert os.path.getsize(os.path.join(smoke_run, experiment.PLOT_FILE)) > 1000
  # Every stage ran on the tokenizer the data stage trained on D_pretrain.
  spm_path = json.load(open(os.path.join(smoke_run, "data", experiment.STAGE_FILE)))["tokenizer"]
  assert spm_path == os.path.join(smoke_run, "data", "spm.model") and os.path.exists(spm_path)
  for stage in ("baseline", "synth_tune", "joint"):
    cfg = json.load(open(os.path.join(smoke_run, stage, "config.json")))
    assert cfg["tokenizer"]["path"] == spm_path, stage
  text = open(os.path.join(smoke_run, "results.txt")).read()
  assert "of the oracle's gain" in text and "Seed gate" in text and "Duplicate@40" in text


def test_gate_stops_a_synthesizer_tuned_on_shuffled_pairs(smoke_run, tmp_path):
  """The random-pair synthesizer learns no use for d1: put in SBP's place, the gate (at the
  main job's minimum) stops the run before synthesis, naming the cause."""
  st = json.load(open(os.path.join(smoke_run, "results.json")))["stages"]
  # d2 is scored after its own d1 and after another pair's: the inputs differ.
  assert st["seed_gate"]["true"] != st["seed_gate"]["shuffled"]
  assert abs(st["seed_gate_random"]["gap"]) < 0.1
  work = tmp_path / "run"
  for name in ("data", "baseline", "oracle", "pair", "gate_split"):
    shutil.copytree(os.path.join(smoke_run, name), work / name, symlinks=True)
  shutil.copy(os.path.join(smoke_run, "identity-sbp_experiment.json"), work)  # the same run
  shutil.copytree(os.path.join(smoke_run, "synth_tune_random"), work / "synth_tune", symlinks=True)
  out = _main(str(work), "--config.experiment.min_seed_nll_gap=0.1", check=False)
  assert out.returncode != 0 and "SeedGateError" in out.stderr, out.stderr[-2000:]
  assert "ignores its seed" in out.stderr and "min_seed_nll_gap=0.1" in out.stderr
  assert not (work / "synthesize").exists()
  gate = json.load(open(work / "seed_gate" / experiment.STAGE_FILE))  # measured, then refused
  assert gate["gap"] == pytest.approx(st["seed_gate_random"]["gap"], abs=1e-4)


def test_an_arm_whose_synthetic_data_runs_out_fails(tmp_path):
  from configs import demo_cpu
  c = demo_cpu.get_config("smoke")
  c.mesh.ici = (-1, 1, 1)  # the test session's 8 emulated devices
  syn = tmp_path / "few.jsonl"
  syn.write_text("".join(json.dumps({"text": f"Doc {i} is short."}) + "\n" for i in range(3)))
  real = concepts.write_corpus(str(tmp_path / "corpus"), num_concepts=20, pretrain_per_concept=3,
                               oracle_per_concept=1, heldout_per_concept=1, facts_per_doc=4,
                               seed=0)["d_pretrain"]
  docs = [json.loads(l) for l in open(real)]
  c = experiment.with_tokenizer(c, experiment.train_tokenizer(docs, 768, str(tmp_path / "spm")))
  c.data.eval = [dict(name="heldout", format="text", files=real)]
  src = [dict(name="real", format="text", files=real, weight=0.5),
         dict(name="syn", format="text", files=str(syn), weight=0.5, synthetic=True)]
  cfg = experiment.joint.text_arm_config(c, src, 20)
  (tmp_path / "joint").mkdir()
  with pytest.raises(experiment.SyntheticDataShort, match="ran out"):
    experiment.train_stage(cfg, str(tmp_path / "joint"))
  assert not (tmp_path / "joint" / experiment.STAGE_FILE).exists()


def test_corpus_tokenizer_is_reproducible_and_keeps_concept_words_whole(tmp_path):
  import sentencepiece as spm
  paths = concepts.write_corpus(str(tmp_path / "c"), num_concepts=20, pretrain_per_concept=3,
                                oracle_per_concept=1, heldout_per_concept=1, facts_per_doc=4,
                                seed=0)
  docs = [json.loads(l) for l in open(paths["d_pretrain"])]
  a = experiment.train_tokenizer(docs, 768, str(tmp_path / "a" / "spm"))
  b = experiment.train_tokenizer(docs, 768, str(tmp_path / "b" / "spm"))
  assert open(a, "rb").read() == open(b, "rb").read()
  sp = spm.SentencePieceProcessor(model_file=a)
  assert sp.get_piece_size() <= 768
  for word in ("friend", "season", "mushrooms", "glacier"):  # the demo vocabulary splits these
    assert len(sp.encode(" " + word)) == 1, word
  assert sp.decode(sp.encode(docs[0]["text"])) == docs[0]["text"]


@pytest.mark.parametrize("extra", [1, None])  # above the model's vocabulary; negative
def test_a_bad_tokenizer_vocab_size_is_refused_before_the_claim(tmp_path, extra):
  from configs import demo_cpu
  c = demo_cpu.get_config("smoke")
  c.experiment.tokenizer_vocab_size = -1 if extra is None else c.model.vocab_size + extra
  with pytest.raises(experiment.InputError, match="experiment.tokenizer_vocab_size"):
    experiment.run(c, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_corpus_seed_is_fixed_unless_minus_one():
  import ml_collections
  c = ml_collections.ConfigDict(dict(seed=5, experiment=dict(concepts=dict(seed=0))))
  assert experiment.corpus_seed(c) == 0
  c.experiment.concepts.seed = -1
  assert experiment.corpus_seed(c) == 5


def test_sbp_effect_summary_gives_arm_and_paired_spreads(monkeypatch):
  monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
  import sbp_effect  # pylint: disable=g-import-not-at-top
  rep = lambda b, s, o: dict(heldout_perplexity=dict(baseline=b, sbp=s, oracle=o),
                             share_of_oracle_gain_heldout=(b - s) / (b - o))
  # The corpus differs little, training a lot: arms spread 0.1 apart, every gain is 0.02-0.03.
  s = sbp_effect.summarize([rep(1.5, 1.48, 1.4), rep(1.6, 1.57, 1.5), rep(1.7, 1.68, 1.6)])
  assert s["oracle_gain"]["gain"] == pytest.approx(0.1)
  assert s["sbp_gain"]["per_seed"] == pytest.approx([0.02, 0.03, 0.02])
  assert s["sbp_gain"]["spread"] == pytest.approx(0.1, abs=1e-3)
  assert not s["sbp_gain"]["beyond_3x_spread"]
  assert s["sbp_gain"]["paired_spread"] == pytest.approx(np.std([0.02, 0.03, 0.02], ddof=1))
  assert s["sbp_gain"]["beyond_3x_paired_spread"]
  assert "paired spread" in sbp_effect.format_summary(s, [0, 1, 2])
