"""Chat messages -> one prompt string, in the ChatML layout our special tokens reserve.

Used by the `serve` job's /v1/chat/completions and by the local generator
backend, so a chat request means the same thing whichever way it arrives.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from sbp_jax.data.special_tokens import IM_END, IM_START

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
