"""Job `s1_smollm2`: s1 on a real chat model -- budget forcing before and after SFT.

SmolLM2-135M-Instruct (imported, `import_gguf`) is fine-tuned with its own tokenizer on
reasoning-gym questions paired with traces we write by program, with the s1 delimiters
(ChatML: <|im_start|>think / <|im_start|>answer), and evaluated with the same budget-forcing
sweep (bf_eval, as configs/budget_forcing_smollm2.py runs it) before and after. Stages, each
under WORKDIR and skipped or resumed on a re-run:
  questions.jsonl     the evaluation questions (gym_eval.write_questions: config.gym)
  train/traces.jsonl  training questions from the same task families with another seed
                      (s1.train_seed), every question whose text is also an evaluation
                      question removed, each with a trace checked against its gold
                      (gym_traces); train/stats.json counts what was kept and dropped
  base/               budget forcing on the imported model
  sft/                the SFT run (job s1_sft: loss on reasoning and answer only)
  sft_eval/           budget forcing on the SFT'd model
  before_after.{json,csv}  one row per setting, both models side by side (also printed);
                      the json also holds each setting's accuracy per task
The job claims WORKDIR for all its settings (runs.claim), so a re-run with other settings
stops and names them; its stages run under that claim (runs.stage_of).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import os
from typing import Mapping, Sequence

from sbp_jax import fileio, runs, validate
from sbp_jax.entigraph.cpt import derive
from sbp_jax.errors import InputError
from sbp_jax.reasoning import bf_eval, gym_eval, gym_traces, sft
from sbp_jax.reasoning.gym_questions import make_questions
from sbp_jax.reasoning.sft_data import template_from_config

IDENTITY_KEYS = ("gym", "s1", "sft", "train", "data", "budget_eval", "model", "tokenizer",
                 "import_gguf", "generate", "seed")
OUTPUTS = ("questions.jsonl", "train", "base", "sft", "sft_eval", "before_after.json",
           "before_after.csv")
# Compared per setting: (column suffix, bf_eval.sequential field).
COMPARED = (("accuracy", "accuracy"), ("mean_think", "mean_thinking_tokens"),
            ("forced", "forced"))


def check(config) -> None:
  """Bad settings, each named with its fix, before anything is written."""
  s = config.s1
  validate.positive("s1.train_questions", s.train_questions)
  validate.finite_number("s1.p_recheck", s.p_recheck, minimum=0.0)
  if float(s.p_recheck) >= 1:
    raise InputError(f"s1.p_recheck={s.p_recheck}: a re-check's probability must be below 1 "
                     "(0 writes none).")
  if int(s.train_seed) == int(config.gym.seed):
    raise InputError(f"s1.train_seed={s.train_seed} equals gym.seed: the training questions "
                     "would be drawn like the evaluation's; pick another s1.train_seed.")
  if config.sft.template.get("name") != "chatml":
    raise InputError(f"sft.template.name={config.sft.template.get('name')!r}: SmolLM2 is "
                     "tuned with its ChatML delimiters; set it to 'chatml'.")
  if config.budget_eval.template.get("name") != config.sft.template.get("name"):
    raise InputError("budget_eval.template.name and sft.template.name differ: the evaluation "
                     "must decode with the delimiters SFT trains; make them equal.")
  unknown = sorted({dict(t).get("name") for t in config.gym.tasks} - set(gym_traces.TRACERS))
  if unknown:
    raise InputError(f"gym.tasks holds {unknown}, for which gym_traces writes no trace; SFT "
                     f"would never see them. Remove them or use tasks among "
                     f"{sorted(gym_traces.TRACERS)}.")
  bf_eval.check(config)


def write_training_set(config, eval_path: str, out_dir: str) -> dict:
  """train/traces.jsonl and train/stats.json (see the module docstring); the stats."""
  path, stats_path = os.path.join(out_dir, "traces.jsonl"), os.path.join(out_dir, "stats.json")
  if fileio.exists(path):
    return fileio.read_json(stats_path)
  g, s = config.gym, config.s1
  rows = make_questions([dict(t) for t in g.tasks], int(s.train_questions), int(s.train_seed),
                        g.get("suffix", ""))
  held_out = [r["question"] for r in fileio.read_jsonl(eval_path)]
  records, per_task = gym_traces.make_records(rows, held_out, float(s.p_recheck),
                                              int(s.train_seed))
  if not records:
    raise InputError(f"none of s1.train_questions={s.train_questions} training questions has a "
                     f"checked trace ({per_task}); raise s1.train_questions or change gym.tasks.")
  stats = dict(records=len(records), tasks=per_task)
  fileio.write_json(stats_path, stats)
  fileio.write_jsonl(path, records)  # last: its presence marks the stage done
  return stats


def prompt_of(config) -> str:
  """The prompt template both SFT and evaluation use: the model's own chat turn with
  `gym.chat_template`, else the SFT template's."""
  prompt = gym_eval.prompt_for(config)
  return prompt if prompt is not None else template_from_config(config.sft.template).prompt


def eval_config(config, questions: str, prompt: str, checkpoint: str):
  e, g = copy.deepcopy(config.budget_eval), copy.deepcopy(config.generate)
  e.questions, e.template.prompt, g.checkpoint = questions, prompt, checkpoint
  return derive(config, job="budget_eval", budget_eval=e, generate=g)


def sft_config(config, train_file: str, prompt: str):
  """The s1_sft job's config: from the import's checkpoint and fields, with its tokenizer."""
  from sbp_jax.generate.generate_job import model_config  # pylint: disable=g-import-not-at-top
  s, t = copy.deepcopy(config.sft), copy.deepcopy(config.train)
  s.train_file, s.template.prompt = train_file, prompt
  t.init_from = os.path.join(config.import_gguf.workdir, "checkpoints")
  return derive(config, job="s1_sft", sft=s, train=t,
                model=dataclasses.asdict(model_config(config)))


def compare(before: list[dict], after: list[dict]) -> list[dict]:
  """One row per setting of both sequential tables: base_* and sft_* side by side."""
  by_setting = {r["setting"]: r for r in after}
  if set(by_setting) != {r["setting"] for r in before}:
    raise ValueError("the two evaluations ran different settings; they cannot be compared.")
  rows = []
  for b in before:
    a = by_setting[b["setting"]]
    row = dict(setting=b["setting"], n=b["n"])
    for name, field in COMPARED:
      row[f"base_{name}"], row[f"sft_{name}"] = b[field], a[field]
    rows.append(row)
  return rows


def format_comparison(rows: list[dict]) -> str:
  acc = lambda v: f"{'-':>9}" if v is None else f"{v:>9.3f}"
  head = (f"{'setting':<10}{'n':>5}{'base acc':>9}{'think':>8}{'forced':>7}"
          f"{'sft acc':>9}{'think':>8}{'forced':>7}")
  lines = ["Budget forcing before (base) and after (sft) s1 SFT", head]
  for r in rows:
    lines.append(f"{r['setting']:<10}{r['n']:>5}{acc(r['base_accuracy'])}"
                 f"{r['base_mean_think']:>8.1f}{r['base_forced']:>7}{acc(r['sft_accuracy'])}"
                 f"{r['sft_mean_think']:>8.1f}{r['sft_forced']:>7}")
  return "\n".join(lines)


def per_task(rows: Sequence[dict], task_of: Mapping[str, str]) -> dict[str, float]:
  """Accuracy per task over one setting's scored per-question rows."""
  hits: dict[str, list[bool]] = {}
  for r in rows:
    hits.setdefault(task_of[r["id"]], []).append(bool(r["correct"]))
  return {t: sum(h) / len(h) for t, h in hits.items()}


def task_table(settings: Sequence[str], questions: str, workdir: str) -> dict:
  """{setting: {task: {base, sft}}} from the two evaluations' per-question results."""
  task_of = {r["id"]: r["task"] for r in fileio.read_jsonl(questions)}
  out = {}
  for spec in settings:
    acc = {side: per_task(list(fileio.read_jsonl(bf_eval.setting_path(
        os.path.join(workdir, sub, "budget_eval"), spec))), task_of)
           for side, sub in (("base", "base"), ("sft", "sft_eval"))}
    out[spec] = {t: dict(base=acc["base"][t], sft=acc["sft"][t]) for t in acc["base"]}
  return out


def format_task_table(table: dict) -> str:
  settings = list(table)
  tasks = list(table[settings[0]]) if settings else []
  lines = ["Accuracy per task, base -> sft",
           f"{'task':<18}" + "".join(f"{s:>14}" for s in settings)]
  for t in tasks:
    lines.append(f"{t:<18}" + "".join(
        f"{table[s][t]['base']:>7.2f}->{table[s][t]['sft']:<5.2f}" for s in settings))
  return "\n".join(lines)


def write_comparison(rows: list[dict], extra: dict, workdir: str) -> None:
  fileio.write_json(os.path.join(workdir, "before_after.json"), dict(**extra, settings=rows))
  with fileio.atomic_open(os.path.join(workdir, "before_after.csv")) as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def run(config, workdir: str) -> dict:
  check(config)
  runs.claim(workdir, "s1_smollm2", config, IDENTITY_KEYS, OUTPUTS)
  join = lambda *p: os.path.join(workdir, *p)
  questions = join("questions.jsonl")
  n = gym_eval.write_questions(config.gym, questions)
  stats = write_training_set(config, questions, join("train"))
  print(f"[data] {n} evaluation questions; {stats['records']} training traces "
        f"(per task: {stats['tasks']})", flush=True)
  prompt = prompt_of(config)
  with runs.stage_of("s1_smollm2"):
    base_ckpt = os.path.join(config.import_gguf.workdir, "checkpoints")
    before = bf_eval.run(eval_config(config, questions, prompt, base_ckpt), join("base"))
    done = join("sft_eval", "budget_eval", "results.json")
    if not fileio.exists(done):  # else SFT finished and was evaluated by an earlier run
      from sbp_jax.train.loop import train  # pylint: disable=g-import-not-at-top
      c = sft.prepare(sft_config(config, join("train", "traces.jsonl"), prompt), join("sft"))
      hist = train(c, join("sft"))
      if int(hist["state"].step) < int(c.train.num_steps):  # SIGTERM or train.run_steps
        print(f"[sft] stopped before step {c.train.num_steps}; run the same command again to "
              "resume.", flush=True)
        return dict(stopped="sft")
      losses = hist["loss"]
      if losses:
        print(f"[sft] {c.train.num_steps} steps; loss {losses[min(losses)]:.3f} -> "
              f"{losses[max(losses)]:.3f}", flush=True)
    after = bf_eval.run(eval_config(config, questions, prompt, join("sft", "checkpoints")),
                        join("sft_eval"))
  rows = compare(before["sequential"], after["sequential"])
  tasks = task_table([r["setting"] for r in rows], questions, workdir)
  write_comparison(rows, dict(questions=n, training_records=stats["records"],
                              training_tasks=stats["tasks"], per_task=tasks), workdir)
  print(format_comparison(rows))
  print(format_task_table(tasks))
  return dict(questions=n, training=stats, settings=rows, per_task=tasks)
