"""Analysis notebooks: the readers in sbp_jax.analysis on files written by the jobs' own
writers, then each notebook executed top to bottom (papermill) on such tiny artifacts."""

import csv
import json
import os
import sys

import numpy as np
import pytest

from sbp_jax import analysis, fileio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
KERNEL = "sbp_jax_test"


# -- artifacts, written by the jobs' writers -----------------------------------------------


def write_training_run(workdir, steps, eval_every, loss0, seed=0):
  """history.json (train.loop._append_history) and TensorBoard events (MetricWriter), as
  the trainer writes them."""
  from sbp_jax.train.loop import _append_history
  from sbp_jax.train.metrics import MetricWriter
  rng = np.random.default_rng(seed)
  hist = {"loss": {}, "eval": {}}
  writer = MetricWriter(os.path.join(workdir, "tb"), steps)
  for s in range(1, steps + 1):
    loss = loss0 / (1 + 0.1 * s) + 0.01 * rng.random()
    hist["loss"][s] = loss
    writer.write(s, {"loss": loss, "lr": 1e-3 * min(1.0, s / 4), "grad_norm": 1.0 / s})
    if s % eval_every == 0:
      ev = {"loss": loss + 0.2, "perplexity": float(np.exp(loss + 0.2)), "tokens": 1024}
      hist["eval"][s] = ev
      writer.write(s, ev, prefix="eval")
  writer.close()
  _append_history(os.path.join(workdir, "history.json"), hist)
  return hist


def eval_results(acc_shift, ppl):
  """results.json contents in the eval job's layout (sbp_jax.eval.jobs.run_eval)."""
  from sbp_jax.eval.formats import PRIMARY
  tasks = {}
  for name, fmt, value in (("heldout", "perplexity", ppl), ("arc_easy", "multiple_choice", 0.30),
                           ("winogrande", "winogrande", 0.50), ("triviaqa", "generative_qa", 0.1)):
    primary, kind = PRIMARY[fmt]
    v = value if kind == "perplexity" else value + acc_shift
    tasks[name] = dict(format=fmt, label=name.upper(), primary=primary, kind=kind,
                       metrics={primary: v, "n": 8}, seconds=0.1)
  return {"checkpoint": "ckpt", "step": 10, "tasks": tasks}


def write_pair_stats(path, seed=0):
  """stats.json via the pair job's own stats functions."""
  from sbp_jax.sbp.pairing import select
  rng = np.random.default_rng(seed)
  total = select.new_stats(20)
  for q in range(2):  # two key shards, as finalize() adds them up
    st = select.new_stats(20)
    scores = np.sort(np.clip(rng.normal(0.45, 0.15, (30, 8)), -1, 1), axis=1)[:, ::-1]
    gids = np.arange(30 * 8).reshape(30, 8)
    gids[0, -1] = -1  # a padded slot
    cands = select.above_alpha(np.arange(30) + 30 * q, gids, scores, 0.6, st)
    for c in cands.values():  # keep all but the first, which counts as a near-duplicate
      st["dropped"]["near_duplicate"] += 1
      st["kept"] += len(c) - 1
      st["sum_kept_similarity"] += sum(s for _, s in c[1:])
    total = select.add_stats(total, st)
  stats = select.finalize_stats(total, 0.6, 0.12, 500)
  fileio.write_json(path, stats)  # as the pair job writes it
  return stats


def _embed(texts):
  """A bag-of-words embedder (unit vectors) standing in for MiniLM."""
  out = np.zeros((len(texts), 64))
  for i, t in enumerate(texts):
    for w in t.lower().split():
      out[i, sum(map(ord, w)) % 64] += 1.0
  return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def write_quality_stage(run_dir):
  """quality/stage.json through the experiment's stage runner and quality_report."""
  from sbp_jax.sbp import experiment, quality
  words = "the cat sat on a mat while dogs ran over green hills near old mills".split()
  rng = np.random.default_rng(0)
  seeds = [" ".join(rng.choice(words, 40)) for _ in range(12)]
  sbp_out = [s if i % 4 == 0 else " ".join(rng.choice(words, 40)) for i, s in enumerate(seeds)]
  rnd_out = [" ".join(rng.choice(words[:6], 30)) for _ in seeds]

  def stage(sub):
    rep = {"SBP synthetic": quality.quality_report(sbp_out, seeds, _embed, 0.5),
           "Random-pair synthetic": quality.quality_report(rnd_out, seeds, _embed, 0.5),
           "Real data (D_pretrain)": quality.quality_report(seeds, [])}
    b1 = {"paired": 0.7, "random": 0.2, "generated_sbp": rep["SBP synthetic"]["similarity"],
          "generated_random": rep["Random-pair synthetic"]["similarity"]}
    return dict(quality=rep, b1=b1)

  return experiment.run_stage(run_dir, "quality", stage)


@pytest.fixture(scope="module")
def sbp_run(tmp_path_factory):
  run = str(tmp_path_factory.mktemp("sbp_run"))
  hists = {arm: write_training_run(os.path.join(run, arm), 12, 6, loss0, seed=i)
           for i, (arm, loss0) in enumerate((("baseline", 6.0), ("joint", 5.5), ("oracle", 5.0)))}
  from sbp_jax.eval.jobs import _write
  for arm, shift, ppl in (("baseline", 0.0, 40.0), ("SBP", 0.05, 35.0), ("oracle", 0.1, 30.0)):
    os.makedirs(os.path.join(run, "eval", arm))
    _write(os.path.join(run, "eval", arm, "results.json"),
           json.dumps(eval_results(shift, ppl), indent=1))
  os.makedirs(os.path.join(run, "pair"))
  stats = write_pair_stats(os.path.join(run, "pair", "stats.json"))
  quality_rec = write_quality_stage(run)
  return dict(dir=run, histories=hists, stats=stats, quality=quality_rec)


# -- readers -------------------------------------------------------------------------------


def test_history_and_tensorboard_readers(sbp_run):
  runs = analysis.training_runs(sbp_run["dir"])
  assert list(runs) == ["baseline", "joint", "oracle"]
  h = analysis.load_history(runs["joint"])
  steps, loss = analysis.history_series(h)
  want = sbp_run["histories"]["joint"]["loss"]
  assert list(steps) == sorted(want) and np.allclose(loss, [want[s] for s in sorted(want)])
  ev_steps, ppl = analysis.history_series(h, "perplexity")
  assert list(ev_steps) == [6, 12]
  tb = analysis.load_tb_scalars(os.path.join(runs["joint"], "tb"))
  assert {"train/loss", "train/lr", "train/grad_norm", "eval/perplexity"} <= set(tb)
  s, v = tb["train/loss"]
  assert list(s) == list(range(1, 13))
  np.testing.assert_allclose(v, loss, rtol=1e-6)  # float32 in the event file
  np.testing.assert_allclose(tb["eval/perplexity"][1], ppl, rtol=1e-6)
  with pytest.raises(FileNotFoundError, match="history.json"):
    analysis.training_runs(os.path.join(sbp_run["dir"], "pair"))


def test_comparison_and_pair_and_quality_readers(sbp_run, tmp_path):
  res = analysis.find_eval_results(sbp_run["dir"])
  assert list(res) == ["baseline", "SBP", "oracle"]
  t = analysis.comparison(res)
  assert t["baseline"] == "baseline" and t["oracle"] == "oracle"
  # Accuracies in points: every arm's three QA tasks shift by 5 / 10 points; SBP recovers half.
  assert t["average_accuracy"]["SBP"] - t["average_accuracy"]["baseline"] == pytest.approx(5.0)
  assert t["oracle_share"]["SBP"] == pytest.approx(0.5)

  stats = analysis.load_pair_stats(os.path.join(sbp_run["dir"], "pair"))
  assert sum(stats["histogram"]["counts"]) == stats["neighbours"] == 2 * (30 * 8 - 1)
  text = analysis.pair_summary(stats)
  assert f"{stats['kept']} pairs kept" in text and "near_duplicate" in text
  bad = tmp_path / "stats.json"
  bad.write_text(json.dumps({k: v for k, v in stats.items() if k != "histogram"}))
  with pytest.raises(ValueError, match=r"stats.json: missing field\(s\) \['histogram'\]"):
    analysis.load_pair_stats(str(bad))

  q = analysis.load_quality(sbp_run["dir"])
  assert set(q["quality"]) == {"SBP synthetic", "Random-pair synthetic", "Real data (D_pretrain)"}
  assert q["quality"]["SBP synthetic"]["pair_copying"] == pytest.approx(0.25)  # every 4th copies
  assert q["b1"]["paired"] == 0.7


def test_qa_points_and_fit(tmp_path):
  from sbp_jax.entigraph import theory
  true = theory.MixtureFit(0.6, (0.1, 0.1, 0.1), (0.5, 0.95, 0.995), 0.0)
  path = write_sweep(tmp_path / "sweep.csv", true)
  pts = analysis.load_qa_points(str(path))
  assert [p["tokens"] for p in pts] == sorted(p["tokens"] for p in pts)
  fit = analysis.fit_scaling(pts)
  assert len(fit.b) == 3 and fit.rmse < 2e-3
  assert fit.a == pytest.approx(0.6, abs=0.02)
  assert analysis.fit_scaling(pts[:2]) is None
  assert len(analysis.fit_scaling(pts[:4]).b) == 1
  bad = tmp_path / "bad.csv"
  bad.write_text("tokens,accuracy\n1000,0.3\n2000,43.0\n")
  with pytest.raises(ValueError, match=r"bad.csv:3: accuracy=43.0 is not a fraction"):
    analysis.load_qa_points(str(bad))


def write_sweep(path, curve, unit=1e6):
  tokens = [0, 1e6, 3e6, 1e7, 3e7, 1e8, 2e8, 4e8, 8e8, 1.6e9]
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["tokens", "accuracy", "label"])
    for t in tokens:
      w.writerow([t, float(curve(t / unit)), "base" if t == 0 else ""])
  return path


class AnswerGen:
  """Sampling-mode QA replies: always the same letter."""

  def __init__(self, letter):
    self.letter = letter

  def complete(self, prompts, params):
    return [f"Thinking.\nAnswer: {self.letter}." for _ in prompts]


class ScriptedEntiGraph:
  """Extraction replies with entities; relation replies name the entities."""

  def complete(self, prompts, params):
    out = []
    for p in prompts:
      if "Reply with a single JSON object" in p:
        out.append(json.dumps({"summary": "A story.", "entities": ["Ada", "Bex", "Cove"]}))
      else:
        out.append("Ada met Bex at Cove, and the three shaped the town.")
    return out


def write_entigraph_demo(run_dir):
  """entigraph/manifest.json (the pipeline) and qa_{before,after}/qa/summary.json (the QA
  job), as the entigraph_demo job lays them out."""
  from configs import entigraph_demo
  from sbp_jax.entigraph import qa
  from sbp_jax.entigraph import synth_corpus
  c = entigraph_demo.get_config()
  c.entigraph.progress = False
  c.entigraph.max_entities = 3
  c.qa.modes = ("sample",)
  c.qa.k = 2
  c.qa.max_questions = 8
  c.entigraph.documents = os.path.join(ROOT, c.entigraph.documents)
  c.qa.questions = os.path.join(ROOT, c.qa.questions)
  manifest = synth_corpus.run_pipeline(c, os.path.join(run_dir, "entigraph"),
                                   generator=ScriptedEntiGraph())
  before = qa.evaluate(c, os.path.join(run_dir, "qa_before"), generator=AnswerGen("A"))
  after = qa.evaluate(c, os.path.join(run_dir, "qa_after"), generator=AnswerGen("B"))
  return manifest, before, after


def test_entigraph_demo_points(tmp_path):
  manifest, before, after = write_entigraph_demo(str(tmp_path))
  pts = analysis.entigraph_demo_points(str(tmp_path))
  assert [p["tokens"] for p in pts] == [0.0, manifest["tokens"]] and manifest["tokens"] > 0
  assert [p["accuracy"] for p in pts] == [before["sample"]["accuracy"],
                                          after["sample"]["accuracy"]]
  with pytest.raises(ValueError, match="no QA mode 'loglik'"):
    analysis.entigraph_demo_points(str(tmp_path), "loglik")


# -- notebooks -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
  """A kernelspec for this interpreter (the test's venv), found through JUPYTER_PATH, with
  this checkout first on the kernel's path."""
  from ipykernel import kernelspec
  prefix = str(tmp_path_factory.mktemp("jupyter"))
  kernelspec.install(kernel_name=KERNEL, prefix=prefix,
                     env={"PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "",
                          "TF_CPP_MIN_LOG_LEVEL": "3"})
  spec = json.load(open(os.path.join(prefix, "share", "jupyter", "kernels", KERNEL,
                                     "kernel.json")))
  assert spec["argv"][0] == sys.executable
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("JUPYTER_PATH", os.path.join(prefix, "share", "jupyter"))
    yield KERNEL


def run_notebook(name, out_dir, parameters, kernel_name):
  import papermill
  import nbformat
  src = os.path.join(NOTEBOOKS, name + ".ipynb")
  # papermill must read every parameter (it skips lines it cannot parse, e.g. quotes in a
  # comment), and the first code cell installs only under Colab.
  assert set(parameters) <= set(papermill.inspect_notebook(src))
  first = next(c for c in nbformat.read(src, as_version=4).cells if c.cell_type == "code")
  assert "import google.colab" in first.source and "if IN_COLAB:" in first.source
  out = os.path.join(out_dir, name + ".out.ipynb")
  papermill.execute_notebook(src, out,
                             parameters=parameters, kernel_name=kernel_name, cwd=out_dir,
                             progress_bar=False, start_timeout=120)
  nb = nbformat.read(out, as_version=4)
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]
  assert not errors
  images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))
  text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []) if o.get("output_type") == "stream")
  return images, text


def _pngs(fig_dir):
  return sorted(f for f in os.listdir(fig_dir) if f.endswith(".png")) if os.path.isdir(
      fig_dir) else []


def test_sbp_results_notebook(sbp_run, kernel, tmp_path):
  fig_dir = str(tmp_path / "figs")
  images, text = run_notebook("sbp_results", str(tmp_path),
                              dict(RUN_DIR=sbp_run["dir"], FIG_DIR=fig_dir), kernel)
  want = ["comparison.png", "pair_similarity.png", "quality.png", "tensorboard_scalars.png",
          "training_curves.png"]
  assert _pngs(fig_dir) == want and images == len(want)
  assert "Share of oracle gain" in text and "50%" in text      # the Table 3.2 layout
  assert f"{sbp_run['stats']['kept']} pairs kept" in text
  assert "Pair-copying" in text and "25.0%" in text            # the quality table


def test_entigraph_scaling_notebook(kernel, tmp_path):
  from sbp_jax.entigraph import theory
  sweep = write_sweep(tmp_path / "sweep.csv",
                      theory.MixtureFit(0.6, (0.1, 0.1, 0.1), (0.5, 0.95, 0.995), 0.0))
  fig_dir = str(tmp_path / "figs")
  images, text = run_notebook(
      "entigraph_scaling", str(tmp_path),
      dict(QA_POINTS=str(sweep), FIG_DIR=fig_dir,
           TOY=dict(V=40, lam=3.0, max_t=6.0, num_points=20, num_runs=2, eps=0.1, seed=0)),
      kernel)
  assert _pngs(fig_dir) == ["qa_scaling.png", "toy_model.png"] and images == 2
  assert "acc(x) = 0.6" in text  # the fitted asymptote
  assert "within Theorem 1's bounds" in text


def write_budget_eval(out_dir):
  """The budget_eval job's outputs: per-setting generations as it stores them, then its own
  evaluate() (which finds every generation on disk and only tabulates, plots and writes)."""
  import ml_collections
  from configs import s1_demo
  from sbp_jax.reasoning import bf_eval
  from sbp_jax.reasoning.sft_data import write_jsonl
  rng = np.random.default_rng(0)
  qs = [{"id": str(i), "question": f"{i}+1", "gold": str(i + 1)} for i in range(6)]
  qfile = os.path.join(out_dir, "questions.jsonl")
  write_jsonl(qfile, [{"question": q["question"], "answer": q["gold"]} for q in qs])
  c = ml_collections.ConfigDict(s1_demo.get_config().to_dict())
  e = c.budget_eval
  e.questions = qfile
  e.sequential.settings = ("max=4", "max=16", "wait=2")
  e.parallel.ns = (1, 2, 4)
  e.parallel.questions_per_part = 100
  bdir = os.path.join(out_dir, "budget_eval")
  for spec, think, p in (("max=4", 4, 0.2), ("max=16", 15, 0.5), ("wait=2", 30, 0.8)):
    write_jsonl(os.path.join(bdir, "sequential", bf_eval._name(spec) + ".jsonl"),  # pylint: disable=protected-access
                [{**q, "thinking": "", "answer": "", "pred": q["gold"] if ok else "0",
                  "correct": bool(ok), "thinking_tokens": think, "waits": 0, "forced_end": True}
                 for q, ok in zip(qs, rng.random(len(qs)) < p)])
  write_jsonl(os.path.join(bdir, "parallel", "part-00000.jsonl"),
              [{**q, "preds": [q["gold"] if x < 0.4 else str(int(x * 10)) for x in rng.random(4)],
                "thinking_tokens": [int(t) for t in rng.integers(5, 15, 4)]} for q in qs])

  def no_sampler():
    raise AssertionError("every generation is on disk; no model should be built")

  return bf_eval.evaluate(no_sampler, c, bdir)


def test_budget_forcing_notebook(kernel, tmp_path):
  res = write_budget_eval(str(tmp_path))
  loaded = analysis.load_budget_eval(str(tmp_path))  # the job's workdir
  assert loaded["sequential"] == res["sequential"] and loaded["parallel"] == res["parallel"]
  os.remove(os.path.join(tmp_path, "budget_eval", "results.json"))  # the CSVs say the same
  from_csv = analysis.load_budget_eval(os.path.join(tmp_path, "budget_eval"))
  assert from_csv["parallel"] == res["parallel"]
  assert [r["accuracy"] for r in from_csv["sequential"]] == [r["accuracy"]
                                                               for r in res["sequential"]]
  fig_dir = str(tmp_path / "figs")
  images, text = run_notebook("budget_forcing", str(tmp_path),
                              dict(BUDGET_EVAL=os.path.join(tmp_path, "budget_eval"),
                                   FIG_DIR=fig_dir), kernel)
  assert _pngs(fig_dir) == ["test_time_scaling.png"] and images == 1
  assert "Sequential scaling (budget forcing)" in text and "per doubling" in text
