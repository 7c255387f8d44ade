"""s1-style SFT data: {question, reasoning, answer} -> prompt/response records.

A record becomes one sequence
    prompt   = template.prompt(question) + think_start
    response = reasoning + trace_end + think_end + answer_prefix + answer + turn_end
(the data layer appends end-of-sequence after the response). The `prompt`
is conditioning only; the loss covers the response: the reasoning trace, the
end-of-thinking delimiter that the model must learn to emit, the answer and
the end of the turn (thesis B.4.5: loss on reasoning traces and solutions,
not on questions). The same template fields configure budget forcing at
evaluation (`budget_fields`), so training and decoding agree on delimiters.

Templates: "plain" uses our single-token special tokens; "chatml" the
Qwen-style turns with `<|im_start|>think` / `<|im_start|>answer`, each
preceded and followed by a newline as in the thesis.

A sequence longer than the training seq_len is an error naming the record,
never a silent truncation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Sequence

from sbp_jax import fileio
from sbp_jax.data import special_tokens as st
from sbp_jax.fileio import iter_jsonl, write_jsonl

log = logging.getLogger(__name__)

FIELDS = ("question", "reasoning", "answer")


@dataclasses.dataclass(frozen=True)
class Template:
  prompt: str            # must contain "{question}"
  think_start: str
  think_end: str         # its first token is what budget forcing stops on
  trace_end: str = ""    # between the trace and think_end (generated as part of thinking)
  answer_prefix: str = ""
  turn_end: str = ""

  def __post_init__(self):
    if "{question}" not in self.prompt:
      raise ValueError(f"template prompt {self.prompt!r} must contain '{{question}}'.")
    if not self.think_end:
      raise ValueError("template think_end must not be empty.")


TEMPLATES = {
    "plain": Template(prompt="Question: {question}\n", think_start=st.THINK_START,
                      think_end=st.THINK_END),
    "chatml": Template(
        prompt=f"{st.IM_START}user\n{{question}}{st.IM_END}\n{st.IM_START}assistant\n",
        think_start=f"{st.IM_START}think\n", trace_end="\n", think_end=f"{st.IM_START}answer",
        answer_prefix="\n", turn_end=st.IM_END),
}


def template_from_config(c) -> Template:
  """c: {name: 'plain' | 'chatml', and optional overrides of any Template field}."""
  name = c.get("name", "plain")
  if name not in TEMPLATES:
    raise ValueError(f"template.name={name!r} is not known; choose one of {sorted(TEMPLATES)} "
                     "(and override fields such as prompt or answer_prefix).")
  over = {f.name: c[f.name] for f in dataclasses.fields(Template) if c.get(f.name) is not None}
  return dataclasses.replace(TEMPLATES[name], **over)


def budget_fields(t: Template) -> dict:
  """BudgetConfig fields that decode with the delimiters the model was trained on."""
  return dict(prompt_template=t.prompt, think_start=t.think_start, think_end=t.think_end,
              answer_prefix=t.answer_prefix)


def render(rec: dict, t: Template) -> dict:
  """{prompt, response} (and the record's id, if any)."""
  out = {"prompt": t.prompt.format(question=rec["question"]) + t.think_start,
         "response": (rec["reasoning"] + t.trace_end + t.think_end + t.answer_prefix
                      + rec["answer"] + t.turn_end)}
  if "id" in rec:
    out["id"] = rec["id"]
  return out


def tokenize(rendered: dict, tok, eos_id: int | None = st.EOS_ID) -> tuple[list[int], list[int]]:
  """(ids, loss_mask) of one rendered record, as the prompt_response data
  format builds it: prompt and response tokenized separately, then EOS.

  loss_mask is 1 exactly on the response tokens (and the EOS that ends them).
  """
  p, r = tok.encode(rendered["prompt"]), tok.encode(rendered["response"])
  tail = [eos_id] if eos_id is not None else []
  return p + r + tail, [0] * len(p) + [1] * (len(r) + len(tail))


def read_records(path: str) -> list[dict]:
  """JSON lines with string fields question / reasoning / answer; errors name file and line."""
  if not fileio.exists(path):
    raise FileNotFoundError(f"{path} does not exist; expected JSON lines with fields {FIELDS}.")
  out = []
  for n, rec in iter_jsonl(path):
    bad = [k for k in FIELDS if not isinstance(rec.get(k), str)]
    if bad:
      raise ValueError(f"{path}:{n}: field(s) {bad} missing or not strings; each SFT record "
                       f"needs string fields {list(FIELDS)}.")
    rec.setdefault("id", f"{os.path.basename(path)}:{n}")
    out.append(rec)
  return out


def check_lengths(records: Sequence[dict], rendered: Sequence[dict], tok, seq_len: int,
                  source: str = "") -> list[int]:
  """Token lengths (with EOS); raises naming the first record that does not fit."""
  lens = []
  for rec, r in zip(records, rendered):
    n = len(tokenize(r, tok)[0])
    if n > seq_len:
      raise ValueError(
          f"{source or 'SFT data'}: record {rec.get('id')!r} is {n} tokens (prompt + response + "
          f"EOS) but train.seq_len={seq_len}; SFT never truncates (thesis B.4.5): raise "
          "train.seq_len or drop the record.")
    lens.append(n)
  return lens


def render_records(src: str, t: Template, tok, seq_len: int) -> tuple[list[dict], dict]:
  """src (question/reasoning/answer JSONL) rendered as prompt/response records, after
  checking every record fits seq_len; with their length statistics. Writes nothing."""
  recs = read_records(src)
  rendered = [render(r, t) for r in recs]
  lens = check_lengths(recs, rendered, tok, seq_len, source=src)
  return rendered, dict(records=len(recs), max_tokens=max(lens, default=0),
                        mean_tokens=sum(lens) / max(len(lens), 1), seq_len=seq_len)


def render_file(src: str, dst: str, t: Template, tok, seq_len: int) -> dict:
  """render_records written to dst; returns the length statistics."""
  rendered, stats = render_records(src, t, tok, seq_len)
  write_jsonl(dst, rendered)
  log.info("Rendered %s -> %s: %s", src, dst, stats)
  return stats
