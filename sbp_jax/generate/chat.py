"""Prompts for chat models, rendered with the model's own jinja2 chat template.

A chat model expects its turns wrapped exactly as in its tuning data (ChatML's
`<|im_start|>user ... <|im_end|>` for SmolLM2/Qwen); raw text reaches it off
distribution. The template ships with the tokenizer (chat_template.jinja or the
`chat_template` field of tokenizer_config.json, as the importers write them) and
is rendered the way Hugging Face renders it: a sandboxed jinja2 environment with
trim_blocks / lstrip_blocks, `raise_exception` and an unescaped `tojson`.

Models trained by sbp_jax itself have no template file: `render_chat` writes the
ChatML layout that our reserved special tokens (IM_START / IM_END) define; the
`serve` job and the EntiGraph backends use it.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
from typing import Mapping, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sbp_jax import fileio
from sbp_jax.data.special_tokens import IM_END, IM_START

Message = Mapping[str, str]


def _raise(message: str):
  raise jinja2.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                    sort_keys=sort_keys)


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
  env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=["jinja2.ext.loopcontrols"])
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  return env.from_string(source)


def find_template(path: str) -> tuple[str, dict]:
  """(template source, tokenizer_config) from a .jinja file or a tokenizer directory."""
  if fileio.exists(path) and not fileio.isdir(path):
    return fileio.read_text(path), {}
  conf_file = os.path.join(path, "tokenizer_config.json")
  conf = {}
  if fileio.exists(conf_file):
    conf = fileio.read_json(conf_file)
  jinja_file = os.path.join(path, "chat_template.jinja")
  if fileio.exists(jinja_file):
    return fileio.read_text(jinja_file), conf
  template = conf.get("chat_template")
  if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
    template = {t.get("name"): t.get("template") for t in template}.get("default")
  if not isinstance(template, str) or not template:
    raise FileNotFoundError(f"{path}: no chat template (chat_template.jinja, or a "
                            "`chat_template` string in tokenizer_config.json); point "
                            "generate.chat_template at a .jinja file or turn generate.chat off.")
  return template, conf


def _token(conf: dict, name: str) -> str:
  t = conf.get(name) or ""
  return t.get("content", "") if isinstance(t, dict) else t


class ChatTemplate:
  """A compiled chat template plus the special tokens it may refer to."""

  def __init__(self, source: str, bos_token: str = "", eos_token: str = "",
               system: str | None = None):
    try:
      self.template = _compile(source)
    except jinja2.TemplateSyntaxError as e:
      raise ValueError(f"chat template line {e.lineno}: {e.message}") from None
    self.bos_token, self.eos_token, self.system = bos_token, eos_token, system

  @classmethod
  def load(cls, path: str, system: str | None = None) -> "ChatTemplate":
    source, conf = find_template(path)
    return cls(source, _token(conf, "bos_token"), _token(conf, "eos_token"), system)

  def render(self, messages: Sequence[Message], add_generation_prompt: bool = True,
             **extra) -> str:
    """The conversation as one string; with add_generation_prompt it ends where the
    assistant's reply starts."""
    for i, m in enumerate(messages):
      if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
        raise ValueError(f"chat message {i} needs string 'role' and 'content' fields: {m!r}")
    return self.template.render(messages=[dict(m) for m in messages],
                                add_generation_prompt=add_generation_prompt,
                                bos_token=self.bos_token, eos_token=self.eos_token, **extra)

  def user_prompt(self, text: str) -> str:
    """One user turn (after the configured system prompt, if any), ready for the reply."""
    msgs = ([{"role": "system", "content": self.system}] if self.system else [])
    return self.render(msgs + [{"role": "user", "content": text}])


def prompt_formatter(config):
  """str -> str for the generation jobs: identity unless config.generate.chat, else
  the user turn rendered with generate.chat_template ("" = the tokenizer's own)."""
  g = config.generate
  if not g.get("chat", False):
    return lambda text: text
  tmpl = ChatTemplate.load(g.get("chat_template") or config.tokenizer.path,
                           system=g.get("system_prompt") or None)
  return tmpl.user_prompt


# --- ChatML with our own special tokens (models without a template) -----------------

ROLES = ("system", "user", "assistant")


def render_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
  """`[{"role": ..., "content": ...}, ...]` -> ChatML text; ends with an open
  assistant turn when add_generation_prompt (the model writes the reply)."""
  if not messages:
    raise ValueError("messages is empty; give at least one {'role', 'content'} message.")
  parts = []
  for i, m in enumerate(messages):
    role, content = m.get("role"), m.get("content")
    if role not in ROLES:
      raise ValueError(f"messages[{i}].role={role!r}; choose one of {ROLES}.")
    if not isinstance(content, str):
      raise ValueError(f"messages[{i}].content must be a string.")
    parts.append(f"{IM_START}{role}\n{content}{IM_END}\n")
  if add_generation_prompt:
    parts.append(f"{IM_START}assistant\n")
  return "".join(parts)


# Generation of a chat reply stops at the end of the assistant's turn.
CHAT_STOP = (IM_END,)
