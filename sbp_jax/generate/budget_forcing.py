"""Budget forcing (s1): control how long a model thinks, at decoding time only.

Thinking runs between a start and an end delimiter. All decoding goes through
`Sampler.generate`; this module only decides what each call may do:
- max budget: a row gets at most N thinking tokens (`max_new_tokens`; N=0 means
  none: the answer follows the start delimiter); when it runs out, the end delimiter (plus an optional string
  such as "Final Answer:") is appended and the answer phase starts;
- min budget: the end delimiter (and end-of-sequence) cannot complete
  (`min_new_tokens`) until the row has thought for the minimum;
- extension: each time the model ends its thinking, the delimiter is dropped
  and a string ("Wait") appended, up to K times (the sampler's `extend_ids`, so
  thinking is one decode however often it is extended).
A delimiter of several tokens (Qwen-style "<|im_start|>answer", or "</think>" in a
vocabulary without it) is a stop sequence: thinking ends only when all its tokens
are generated, and a suppressed one is taken back whole.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from sbp_jax.data import special_tokens
from sbp_jax.errors import InputError
from sbp_jax.generate.sampler import MAX_STOP_LEN, Sampler, SamplingParams
from sbp_jax.generate.text_codec import eos_ids_of


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
  think_start: str = special_tokens.THINK_START
  think_end: str = special_tokens.THINK_END
  answer_prefix: str = ""       # appended after the end delimiter, e.g. "Final Answer:"
  max_thinking: int | None = None  # None: no budget (thinking_cap bounds it); 0: no thinking
  min_thinking: int = 0
  num_waits: int = 0            # extensions
  wait: str = "Wait"
  max_answer_tokens: int = 128
  thinking_cap: int = 2048
  prompt_template: str = "{question}"

  def __post_init__(self):
    for name in ("min_thinking", "num_waits") + (
        ("max_thinking",) if self.max_thinking is not None else ()):
      if int(getattr(self, name)) < 0:
        raise InputError(f"budget setting {name}={getattr(self, name)} must be >= 0.")
    for name in ("thinking_cap", "max_answer_tokens"):
      if int(getattr(self, name)) <= 0:
        raise InputError(f"budget_eval.{name}={getattr(self, name)} must be > 0.")
    if self.max_thinking is not None and self.min_thinking > self.max_thinking:
      raise InputError(f"min_thinking={self.min_thinking} exceeds max_thinking="
                       f"{self.max_thinking}; lower min= or raise max= in the setting.")
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


def budget_of(bc: BudgetConfig) -> int:
  """Most thinking tokens a row may have: the max budget, else the cap."""
  return bc.thinking_cap if bc.max_thinking is None else int(bc.max_thinking)


def delimiter_ids(tok, text: str) -> list[int]:
  """A delimiter's ids: its own id when the vocabulary has it as one token."""
  one = tok.token_to_id(text)
  return [one] if one is not None else tok.encode(text)


def parse_setting(spec: str) -> dict:
  """'none' | comma-separated 'max=N', 'min=N', 'wait=K' -> BudgetConfig fields (N, K >= 0;
  max=0 means no thinking at all)."""
  keys = {"max": "max_thinking", "min": "min_thinking", "wait": "num_waits"}
  out = {}
  if spec.strip() in ("", "none"):
    return out
  for part in spec.split(","):
    k, _, v = part.partition("=")
    if k.strip() not in keys or not v.strip().isdigit():
      raise InputError(f"budget setting {spec!r}: {part!r} is not max=N, min=N or wait=K "
                       "(N, K whole numbers >= 0).")
    out[keys[k.strip()]] = int(v)
  return out


@dataclasses.dataclass
class Thinking:
  """One row's thinking phase: ids, where the model tried to end it, and how it stopped."""
  tokens: list[int]
  ends: list[int]        # len(tokens) each time the model ended its thinking (before any "Wait")
  waits: int
  forced: bool           # cut by the budget


def _check(sampler: Sampler, bc: BudgetConfig):
  tok = sampler.tokenizer
  if tok is None:
    raise ValueError("budget forcing needs a sampler with a tokenizer.")
  n = len(delimiter_ids(tok, bc.think_end))
  if not 0 < n <= MAX_STOP_LEN:
    raise InputError(f"think_end={bc.think_end!r} encodes to {n} tokens; a thinking delimiter "
                     f"needs 1 to {MAX_STOP_LEN} (pick a shorter one, or one the vocabulary "
                     "holds as a single token).")
  return tok


def prompt_ids(tok, questions: Sequence[str], bc: BudgetConfig) -> list[list[int]]:
  """Each question in the prompt template, followed by the start-of-thinking delimiter."""
  return [tok.encode(bc.prompt_template.format(question=q)) + delimiter_ids(tok, bc.think_start)
          for q in questions]


def think(sampler: Sampler, prefix: Sequence[list[int]], bc: BudgetConfig,
          sp: SamplingParams = SamplingParams(temperature=0.0), seed: int = 0) -> list[Thinking]:
  """The thinking phase of every row, obeying the max / min budgets and extensions of `bc`.

  One decode: the end delimiter (and end-of-sequence) cannot complete until the
  minimum, is replaced by "Wait" while extensions are left (inside the sampler's
  loop), and the row is cut at the budget.
  """
  tok = _check(sampler, bc)
  budget = budget_of(bc)
  outs = sampler.generate(
      prefix,
      dataclasses.replace(sp, stop_ids=eos_ids_of(tok),
                          stop_sequences=(tuple(delimiter_ids(tok, bc.think_end)),),
                          stop_strings=(), max_new_tokens=budget,
                          min_new_tokens=bc.min_thinking, extend_ids=tuple(tok.encode(bc.wait)),
                          extensions=bc.num_waits), seed=seed)
  rows = []
  for o in outs:
    ended = o.finish_reason == "stop_token"
    tokens = o.tokens[:len(o.tokens) - o.stop_len]
    rows.append(Thinking(tokens, list(o.extended_at) + ([len(tokens)] if ended else []),
                         len(o.extended_at), not ended))
  return rows


def answer(sampler: Sampler, prefix: Sequence[list[int]], thoughts: Sequence[Thinking],
           bc: BudgetConfig, sp: SamplingParams = SamplingParams(temperature=0.0),
           seed: int = 0) -> list[BudgetResult]:
  """Ends each row's thinking with the delimiter (and answer prefix), then answers."""
  tok = _check(sampler, bc)
  eos = eos_ids_of(tok)
  suffix = delimiter_ids(tok, bc.think_end) + (tok.encode(bc.answer_prefix)
                                               if bc.answer_prefix else [])
  outs = sampler.generate(
      [list(p) + t.tokens + suffix for p, t in zip(prefix, thoughts)],
      dataclasses.replace(sp, stop_ids=eos, stop_sequences=(), stop_strings=(),
                          max_new_tokens=bc.max_answer_tokens,
                          min_new_tokens=0), seed=seed)
  head = tok.decode(suffix)
  return [BudgetResult(thinking=tok.decode(t.tokens), answer=head + o.text,
                       thinking_tokens=len(t.tokens), answer_tokens=len(o.tokens),
                       waits=t.waits, forced_end=t.forced) for t, o in zip(thoughts, outs)]


def budget_force(sampler: Sampler, questions: Sequence[str], bc: BudgetConfig,
                 sp: SamplingParams = SamplingParams(temperature=0.0),
                 seed: int = 0) -> list[BudgetResult]:
  """Thinks, then answers, for each question, obeying the budgets in `bc`.

  `sp` sets temperature / top-k / top-p / logit bias for both phases; its
  stop ids and token limits are replaced by the budget logic.
  """
  tok = _check(sampler, bc)
  prefix = prompt_ids(tok, questions, bc)
  thoughts = think(sampler, prefix, bc, sp, seed)
  return answer(sampler, prefix, thoughts, bc, sp, seed + 1)  # its own random stream


def derivable(bc: BudgetConfig, trace_bc: BudgetConfig) -> bool:
  """Whether greedy thinking under `bc` can be read off a greedy trace made under
  `trace_bc` (see from_trace): no minimum, at most as many extensions, and a
  budget no larger than the trace's."""
  budget, trace_budget = budget_of(bc), budget_of(trace_bc)
  return (bc.min_thinking == 0 and trace_bc.min_thinking == 0 and
          bc.num_waits <= trace_bc.num_waits and budget <= trace_budget and
          (bc.think_start, bc.think_end, bc.wait, bc.prompt_template) ==
          (trace_bc.think_start, trace_bc.think_end, trace_bc.wait, trace_bc.prompt_template))


def from_trace(trace: Thinking, bc: BudgetConfig, wait_len: int) -> Thinking:
  """Greedy thinking under `bc`, read off a greedy trace with more extensions and budget.

  Greedy decoding is a function of the prefix, so until a row's thinking leaves
  the trace it is the trace: a run with budget B and K extensions ends at the
  trace's (K+1)-th end if that comes before B, else it is cut at B (every
  earlier end having been extended with the same "Wait" ids as in the trace).
  Exact for a one-token end delimiter. With one of several tokens, a run whose
  budget cuts the delimiter after its first tokens keeps them, which the trace (that
  took them back) does not hold, and the trace does not say whether an end was the
  delimiter or end-of-sequence; such settings should be decoded on their own.
  This replays the extension rule of `think` on the trace's recorded ends;
  requires derivable(bc, trace's config). One thinking decode then serves
  every setting.
  """
  budget = budget_of(bc)
  waits = 0
  for end in trace.ends:
    if end >= budget:                           # the budget comes first
      break
    if waits == bc.num_waits:                   # the model's own end, not extended
      return Thinking(trace.tokens[:end], trace.ends[:waits + 1], waits, False)
    waits += 1
    if end + wait_len >= budget:                # the "Wait" runs into the budget
      break
  if len(trace.tokens) < budget:
    raise ValueError(f"the trace has {len(trace.tokens)} thinking tokens and no end before "
                     f"the budget {budget}; it was not made under a larger budget.")
  return Thinking(trace.tokens[:budget], trace.ends[:waits], waits, True)
