"""Budget forcing (s1): control how long a model thinks, at decoding time only.

Thinking runs between a start and an end delimiter. All decoding goes through
`Sampler.generate`; this module only decides what each call may do:
- max budget: a row gets at most N thinking tokens (its `max_new_tokens` is the
  budget left); when it runs out, the end delimiter (plus an optional string
  such as "Final Answer:") is appended and the answer phase starts;
- min budget: the end delimiter's first token (and end-of-sequence) is masked
  (`min_new_tokens`) until the row has thought for the minimum;
- extension: each time the model ends its thinking, the delimiter is dropped
  and a string ("Wait") appended, up to K times.
A multi-token delimiter (Qwen-style "<|im_start|>answer") is detected and masked
by its first token.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from sbp_jax.data import special_tokens
from sbp_jax.generate.sampler import Sampler, SamplingParams
from sbp_jax.generate.tokenizer import eos_ids_of


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
  think_start: str = special_tokens.THINK_START
  think_end: str = special_tokens.THINK_END
  answer_prefix: str = ""       # appended after the end delimiter, e.g. "Final Answer:"
  max_thinking: int = 0         # 0: no budget (thinking_cap still bounds it)
  min_thinking: int = 0
  num_waits: int = 0            # extensions
  wait: str = "Wait"
  max_answer_tokens: int = 128
  thinking_cap: int = 2048
  prompt_template: str = "{question}"

  def __post_init__(self):
    if self.max_thinking and self.min_thinking > self.max_thinking:
      raise ValueError(f"min_thinking={self.min_thinking} exceeds max_thinking="
                       f"{self.max_thinking}.")
    if "{question}" not in self.prompt_template:
      raise ValueError("prompt_template must contain '{question}'.")


@dataclasses.dataclass
class BudgetResult:
  thinking: str
  answer: str             # starts with the end delimiter (and answer_prefix)
  thinking_tokens: int
  answer_tokens: int      # generated answer tokens (after the forced prefix)
  waits: int              # times "Wait" was appended
  forced_end: bool        # thinking was cut by the max budget


def _ids(tok, text: str) -> list[int]:
  one = tok.token_to_id(text)
  return [one] if one is not None else tok.encode(text)


def budget_force(sampler: Sampler, questions: Sequence[str], bc: BudgetConfig,
                 sp: SamplingParams = SamplingParams(temperature=0.0),
                 seed: int = 0) -> list[BudgetResult]:
  """Thinks, then answers, for each question, obeying the budgets in `bc`.

  `sp` sets temperature / top-k / top-p / logit bias for both phases; its
  stop ids and token limits are replaced by the budget logic.
  """
  tok = sampler.tokenizer
  if tok is None:
    raise ValueError("budget forcing needs a sampler with a tokenizer.")
  end_ids = _ids(tok, bc.think_end)
  if not end_ids:
    raise ValueError(f"think_end={bc.think_end!r} encodes to no tokens.")
  eos = eos_ids_of(tok)
  stop = tuple(dict.fromkeys((end_ids[0],) + eos))
  wait_ids = tok.encode(bc.wait)
  budget = bc.max_thinking or bc.thinking_cap
  prefix = [tok.encode(bc.prompt_template.format(question=q)) + _ids(tok, bc.think_start)
            for q in questions]
  n = len(questions)
  think: list[list[int]] = [[] for _ in range(n)]
  waits, forced = [0] * n, [False] * n
  active = list(range(n))
  rnd = 0
  while active:
    left = [budget - len(think[i]) for i in active]
    outs = sampler.generate(
        [prefix[i] + think[i] for i in active],
        dataclasses.replace(sp, stop_ids=stop, stop_strings=(), max_new_tokens=max(left),
                            min_new_tokens=0),
        seed=seed + rnd, max_new_tokens=left,
        min_new_tokens=[max(0, bc.min_thinking - len(think[i])) for i in active])
    rnd += 1
    still = []
    for i, o in zip(active, outs):
      ended = o.finish_reason == "stop_token"
      think[i] += o.tokens[:-1] if ended else o.tokens
      if not ended:  # out of budget
        forced[i] = True
      elif waits[i] < bc.num_waits:
        think[i] += wait_ids[:budget - len(think[i])]
        waits[i] += 1
        if len(think[i]) >= budget:
          forced[i] = True
        else:
          still.append(i)
    active = still

  suffix = _ids(tok, bc.think_end) + (tok.encode(bc.answer_prefix) if bc.answer_prefix else [])
  outs = sampler.generate(
      [prefix[i] + think[i] + suffix for i in range(n)],
      dataclasses.replace(sp, stop_ids=eos, stop_strings=(), max_new_tokens=bc.max_answer_tokens,
                          min_new_tokens=0), seed=seed + rnd)
  head = tok.decode(suffix)
  return [BudgetResult(thinking=tok.decode(think[i]), answer=head + o.text,
                       thinking_tokens=len(think[i]), answer_tokens=len(o.tokens),
                       waits=waits[i], forced_end=forced[i]) for i, o in enumerate(outs)]
