"""Job `budget_eval_gym`: the budget-forcing sweep (job `budget_eval`) on
questions that reasoning-gym generates here, from a seed.

Steps: (1) write workdir/questions.jsonl from `config.gym` (tasks, num_questions,
seed); a re-run regenerates it and refuses a workdir whose file differs, since
the sweep's finished settings would belong to other questions; (2) with
`gym.chat_template`, wrap each question as a user turn with the model's own
chat template (the tokenizer directory's template), so the thinking delimiters
follow the assistant header exactly as a chat model sees its turns; (3) run
sbp_jax.reasoning.bf_eval on them.
"""

from __future__ import annotations

import json
import logging
import os

from sbp_jax import fileio
from sbp_jax.fileio import write_jsonl
from sbp_jax.generate.chat import ChatTemplate
from sbp_jax.reasoning import bf_eval
from sbp_jax.reasoning.gym_questions import make_questions

log = logging.getLogger(__name__)

_SLOT = "\x00QUESTION\x00"


def chat_prompt(template: ChatTemplate) -> str:
  """A str.format template ("{question}") for one user turn ending at the assistant header."""
  text = template.user_prompt(_SLOT)
  if _SLOT not in text:
    raise ValueError("the chat template dropped the user message; cannot build a prompt from it.")
  return text.replace("{", "{{").replace("}", "}}").replace(_SLOT, "{question}")


def prompt_for(config) -> str | None:
  """With `gym.chat_template`, the prompt template of one user turn in the model's own chat
  template (generate.chat_template, else the tokenizer's); None without it."""
  if not config.gym.get("chat_template", False):
    return None
  source = config.generate.get("chat_template") or config.tokenizer.path
  return chat_prompt(ChatTemplate.load(source, config.generate.get("system_prompt") or None))


def write_questions(g, path: str) -> int:
  rows = make_questions([dict(t) for t in g.tasks], int(g.num_questions), int(g.seed),
                        g.get("suffix", ""))
  text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  if fileio.exists(path):
    if fileio.read_text(path) != text:
      raise ValueError(f"{path} holds other questions than config.gym now gives (tasks, "
                       "num_questions or seed changed); the finished settings under its "
                       "workdir belong to those. Use a fresh --workdir.")
  else:
    write_jsonl(path, rows)
  return len(rows)


def run(config, workdir: str) -> dict:
  g = config.gym
  path = os.path.join(workdir, "questions.jsonl")
  n = write_questions(g, path)
  log.info("%d reasoning-gym questions (seed %d) in %s", n, int(g.seed), path)
  e = config.budget_eval
  e.questions = path
  prompt = prompt_for(config)
  if prompt is not None:
    e.template.prompt = prompt
    log.info("prompt template: %r", e.template.prompt)
  return bf_eval.run(config, workdir)
