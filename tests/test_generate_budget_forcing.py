"""Budget forcing on a tiny random model, steered with a logit bias so that the
model either always or never tries to end its thinking."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs.model import presets
from sbp_jax.data import special_tokens as st
from sbp_jax.generate.budget_forcing import BudgetConfig, budget_force
from sbp_jax.generate.sampler import Sampler, SamplingParams
from sbp_jax.generate.text_codec import ByteTokenizer
from sbp_jax.model import ModelConfig, Transformer

TOK = ByteTokenizer()
END = TOK.token_to_id(st.THINK_END)
QUESTIONS = ["What is 2+3?", "Name a prime."]


@pytest.fixture(scope="module")
def sampler():
  cfg = ModelConfig.from_dict(presets.get("tiny", dtype="float32", remat_policy="none"))
  init = jax.jit(lambda r: Transformer(cfg).init(r, jnp.zeros((1, 8), jnp.int32))["params"])
  return Sampler(cfg, nn.meta.unbox(init(jax.random.key(1))), tokenizer=TOK)


def _greedy(bias=0.0, tid=END):
  return SamplingParams(temperature=0.0, logit_bias=((tid, bias),) if bias else ())


def test_max_budget_stops_at_exactly_n(sampler):
  bc = BudgetConfig(max_thinking=10, answer_prefix="Final Answer:", max_answer_tokens=5)
  out = budget_force(sampler, QUESTIONS, bc, _greedy(-1e9))
  for r in out:
    assert r.thinking_tokens == 10 and r.forced_end
    assert r.answer.startswith(st.THINK_END + "Final Answer:")
    assert st.THINK_END not in r.thinking
  # Without steering the budget is still an upper bound.
  for r in budget_force(sampler, QUESTIONS, BudgetConfig(max_thinking=7, max_answer_tokens=3)):
    assert r.thinking_tokens <= 7 and r.answer.startswith(st.THINK_END)


def test_min_budget_masks_the_end_until_the_minimum(sampler):
  # The bias makes ending the most likely choice at every step.
  out = budget_force(sampler, QUESTIONS, BudgetConfig(min_thinking=6, max_answer_tokens=2),
                     _greedy(1e9))
  for r in out:
    assert r.thinking_tokens == 6 and not r.forced_end and r.waits == 0
    assert st.THINK_END not in r.thinking


def test_extension_appends_wait_k_times(sampler):
  out = budget_force(sampler, QUESTIONS, BudgetConfig(num_waits=3, max_answer_tokens=2),
                     _greedy(1e9))
  for r in out:
    assert r.thinking == "WaitWaitWait" and r.waits == 3
  out = budget_force(sampler, QUESTIONS,
                     BudgetConfig(num_waits=2, min_thinking=4, max_answer_tokens=2), _greedy(1e9))
  for r in out:
    assert r.waits == 2 and r.thinking.count("Wait") == 2
    assert r.thinking_tokens == 4 + 2 * len("Wait") and r.thinking.endswith("WaitWait")
  # A max budget also bounds extensions: 5 tokens leave room for one "Wait" and a bit.
  for r in budget_force(sampler, QUESTIONS, BudgetConfig(num_waits=4, max_thinking=5,
                                                         max_answer_tokens=2), _greedy(1e9)):
    assert r.thinking_tokens == 5 and r.forced_end and r.thinking == "WaitW"


def test_multi_token_delimiter_ends_thinking_only_when_complete(sampler):
  # The bias makes "<|im_start|>" (or "a") the greedy token at every step: its
  # first token alone, again and again, never the whole delimiter.
  for start, end, tid in ((st.IM_START + "think", st.IM_START + "answer",
                           TOK.token_to_id(st.IM_START)), ("<t>", "ab", ord("a"))):
    bc = BudgetConfig(think_start=start, think_end=end, num_waits=2, max_thinking=6,
                      max_answer_tokens=2)
    for r in budget_force(sampler, QUESTIONS, bc, _greedy(1e9, tid)):
      assert r.thinking_tokens == 6 and r.forced_end and r.waits == 0, r
      assert r.answer.startswith(end)


def test_settings_read_off_one_greedy_trace_equal_their_own_runs():
  from tests.greedy_fake import GreedyFake  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate import budget_forcing as bf  # pylint: disable=g-import-not-at-top
  fake = GreedyFake(end_every=12)
  questions = [f"question {i}: {i * 7 % 13} + {i}" for i in range(80)]
  trace_bc = BudgetConfig(num_waits=3, thinking_cap=60)
  prefix = bf.prompt_ids(fake.tokenizer, questions, trace_bc)
  traces = bf.think(fake, prefix, trace_bc)
  # The fake ends early and late, so every branch of from_trace is exercised.
  assert {len(t.ends) for t in traces} >= {1, 2, 3, 4}
  assert any(t.forced for t in traces) and not all(t.forced for t in traces)
  wait_len = len(fake.tokenizer.encode("Wait"))
  for fields in (dict(), dict(max_thinking=3), dict(max_thinking=8), dict(max_thinking=17),
                 dict(max_thinking=60), dict(num_waits=1), dict(num_waits=2),
                 dict(num_waits=3), dict(num_waits=3, max_thinking=12),
                 dict(thinking_cap=25, num_waits=2)):
    bc = BudgetConfig(thinking_cap=fields.pop("thinking_cap", 60), **fields)
    assert bf.derivable(bc, trace_bc)
    direct = bf.think(fake, prefix, bc)
    derived = [bf.from_trace(t, bc, wait_len) for t in traces]
    assert derived == direct, fields
  assert not bf.derivable(BudgetConfig(min_thinking=2), trace_bc)
  assert not bf.derivable(BudgetConfig(num_waits=4, thinking_cap=60), trace_bc)
  assert not bf.derivable(BudgetConfig(max_thinking=61), trace_bc)


def _rounds(sampler, prefix, bc, sp):
  """Reference semantics: decode until the model ends, append "Wait", re-prefill, repeat."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from sbp_jax.generate import budget_forcing as bf  # pylint: disable=g-import-not-at-top
  tok = sampler.tokenizer
  stop = (tok.token_to_id(bc.think_end),) + tuple(tok.eos_ids)
  wait, budget = tok.encode(bc.wait), bf.budget_of(bc)
  rows = []
  for p in prefix:
    r = bf.Thinking([], [], 0, False)
    while True:
      o = sampler.generate([list(p) + r.tokens], dataclasses.replace(
          sp, stop_ids=stop, max_new_tokens=budget - len(r.tokens),
          min_new_tokens=max(0, bc.min_thinking - len(r.tokens))))[0]
      if o.finish_reason != "stop_token":
        r.tokens += o.tokens
        r.forced = True
        break
      r.tokens += o.tokens[:-1]
      r.ends.append(len(r.tokens))
      if r.waits == bc.num_waits:
        break
      r.tokens += wait[:budget - len(r.tokens)]
      r.waits += 1
      if len(r.tokens) >= budget:
        r.forced = True
        break
    rows.append(r)
  return rows


def test_in_loop_extension_equals_decoding_in_rounds(sampler):
  from sbp_jax.generate import budget_forcing as bf  # pylint: disable=g-import-not-at-top
  # A bias that makes ending the greedy choice at some positions but not all: the
  # median margin by which the end delimiter loses, over an unbiased generation.
  prefix = bf.prompt_ids(TOK, QUESTIONS + ["Why is the sky blue?", "7*6"], BudgetConfig())
  free = sampler.generate(prefix, SamplingParams(temperature=0.0, max_new_tokens=24,
                                                 stop_ids=(-1,)), record_logits=True)
  margins = jnp.concatenate([c.logits.max(-1) - c.logits[:, END] for c in free])
  sp = _greedy(float(jnp.quantile(margins, 0.8)))
  for bc in (BudgetConfig(num_waits=3, thinking_cap=24),
             BudgetConfig(num_waits=2, min_thinking=5, max_thinking=17),
             BudgetConfig(num_waits=6, thinking_cap=30)):
    got = bf.think(sampler, prefix, bc, sp)
    want = _rounds(sampler, prefix, bc, sp)
    assert got == want, bc
  assert {t.waits for t in got} != {0} and any(not t.forced for t in got), got
