"""The sampler: cached decode equals recomputation, determinism, and the filters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.model import presets
from sbp_jax.generate.sampler import (Sampler, SamplingParams, first_argmax, sample_tokens,
                                      share_plan, top_k_filter)
from sbp_jax.generate.text_codec import ByteTokenizer
from sbp_jax.model import ModelConfig, Transformer
from sbp_jax.parallel import make_mesh, make_rules


def _model(**kw):
  cfg = ModelConfig.from_dict(presets.get("tiny", dtype="float32", remat_policy="none", **kw))
  init = jax.jit(lambda r: Transformer(cfg).init(r, jnp.zeros((1, 8), jnp.int32))["params"])
  return cfg, nn.meta.unbox(init(jax.random.key(0)))


@pytest.fixture(scope="module")
def tiny():
  return _model()


@pytest.fixture(scope="module")
def sampler(tiny):
  # One sampler (one set of compiled functions) shared by the tests below.
  return Sampler(tiny[0], tiny[1], tokenizer=ByteTokenizer(), chunk=4)


@pytest.mark.parametrize("lengths", [(5,), (3, 9, 1, 6)])
def test_cached_decode_matches_full_recompute(tiny, sampler, lengths):
  _check_against_recompute(*tiny, sampler, lengths)


def test_cached_decode_matches_full_recompute_with_unscanned_layers():
  # The layer loop in Python (layer_i params) writes the same cache in place.
  cfg, params = _model(scan_layers=False)
  _check_against_recompute(cfg, params, Sampler(cfg, params), (3, 9, 1, 6))


def test_cached_decode_matches_full_recompute_as_the_cache_grows(tiny, sampler):
  # 16 prompt slots, then the cache grows to 32, 64 and 80 slots while 60 tokens decode.
  _check_against_recompute(*tiny, sampler, (5, 2), new=60)


def test_finished_rows_leave_the_batch_without_changing_any_row(tiny):
  """With most rows done after one run of the loop, the rest move to a smaller batch;
  each row's tokens equal those it draws when every row runs to the end."""
  s = Sampler(*tiny, chunk=4)
  taken = []
  take = s._take
  s._take = lambda state, ctl, keep: taken.append(np.asarray(keep).tolist()) or take(state, ctl,
                                                                                     keep)
  prompts = [[3, 4, 5], [7, 8], [9], [10, 11, 12, 13]]
  sp = SamplingParams(temperature=0.8, max_new_tokens=40, stop_ids=())
  limits = [3, 40, 2, 6]
  outs = s.generate(prompts, sp, seed=5, max_new_tokens=limits)
  # After 4 steps rows 1 and 3 go on as a batch of 2; after 8, row 1 alone.
  assert taken == [[1, 3], [0]]
  full = s.generate(prompts, sp, seed=5)
  assert len(taken) == 2                                     # rows that all end together stay
  for o, f, n in zip(outs, full, limits):
    assert o.tokens == f.tokens[:n]


def _check_against_recompute(cfg, params, sampler, lengths, new=12, prompts=None):
  rng = np.random.default_rng(len(lengths))
  if prompts is None:
    prompts = [rng.integers(3, 256, size=n).tolist() for n in lengths]
  sp = SamplingParams(temperature=0.0, max_new_tokens=new, stop_ids=())
  outs = sampler.generate(prompts, sp, record_logits=True)
  # Full recomputation without a cache; rows right-padded to one length (causal, so
  # the padding does not touch earlier positions).
  full = [p + o.tokens for p, o in zip(prompts, outs)]
  padded = np.zeros((len(full), max(map(len, full))), np.int32)
  for i, f in enumerate(full):
    padded[i, :len(f)] = f
  apply = jax.jit(lambda x: Transformer(cfg).apply({"params": params}, x)["logits"])
  all_ref = np.asarray(apply(padded))
  worst = 0.0
  for i, (p, o) in enumerate(zip(prompts, outs)):
    assert len(o.tokens) == new and o.finish_reason == "length"
    ref = all_ref[i, len(p) - 1:len(full[i]) - 1]
    worst = max(worst, float(np.abs(ref - o.logits).max()))
    # Greedy: each generated token is the argmax of the recomputed logits.
    np.testing.assert_array_equal(ref.argmax(-1), o.tokens)
  assert worst < 1e-4, worst


def test_share_plan_finds_the_shared_prefix_and_repeated_prompts():
  head = list(range(3, 140))                        # 137 shared tokens
  prompts = [head + [1, 2], head + [5], head + [1, 2], head + [7, 8, 9]]
  shared, source = share_plan(prompts, 8)
  assert shared == 128                              # rounded down to a multiple of 64
  assert source.tolist() == [0, 1, 0, 3, 0, 0, 0, 0]  # padding rows copy row 0
  # Each prompt keeps at least one token of its own; a lone prompt shares nothing.
  assert share_plan([head[:64], head[:64]], 2)[0] == 0
  assert share_plan([head[:65], head[:65]], 2)[0] == 64
  assert share_plan([head[:66], head[:65]], 2)[0] == 64
  assert share_plan([head], 1)[0] == 0
  assert share_plan([head + [1], [9] + head], 2)[0] == 0


def test_shared_and_repeated_prompts_decode_as_full_recompute(tiny):
  """A 100-token shared prefix is prefilled once (64 tokens) and each distinct prompt's
  remainder once; every row, repeats included, equals recomputation without a cache,
  and sampling draws the same tokens as with sharing off."""
  cfg, params = tiny
  s = Sampler(cfg, params, chunk=4)
  calls = []
  extend = s._extend
  s._extend = lambda *a: calls.append(a[2].shape) or extend(*a)
  rng = np.random.default_rng(0)
  head = rng.integers(3, 256, size=100).tolist()
  prompts = [head + rng.integers(3, 256, size=n).tolist() for n in (3, 20, 1)]
  prompts = [prompts[0], prompts[1], prompts[0], prompts[2], prompts[0]]
  _check_against_recompute(cfg, params, s, (), new=20, prompts=prompts)
  assert calls == [(3, 64)]  # once: the 3 distinct remainders (37-56 tokens) in a 64 bucket
  sp = SamplingParams(temperature=1.0, max_new_tokens=16, stop_ids=())
  plain = Sampler(cfg, params, chunk=4, share_prompts=False)
  a, b = s.generate(prompts, sp, seed=3), plain.generate(prompts, sp, seed=3)
  assert [x.tokens for x in a] == [x.tokens for x in b]
  assert a[0].tokens != a[2].tokens  # repeated prompts still draw their own samples


def test_greedy_is_deterministic_and_sharded_run_agrees(tiny, sampler):
  cfg, params = tiny
  prompts = [[5, 6, 7], [9, 10, 11, 12, 13, 14, 15]]
  sp = SamplingParams(temperature=0.0, max_new_tokens=10, stop_ids=())
  a = sampler.generate(prompts, sp, seed=0)
  b = sampler.generate(prompts, sp, seed=123)
  mesh = make_mesh((2, 2, 2))
  c = Sampler(cfg, params, mesh=mesh, rules=make_rules()).generate(prompts, sp)
  assert [x.tokens for x in a] == [x.tokens for x in b] == [x.tokens for x in c]


def test_seeded_sampling_reproducible_and_independent_of_batching(sampler):
  sp = SamplingParams(temperature=1.0, top_k=50, top_p=0.9, max_new_tokens=10, stop_ids=())
  s = sampler
  one = s.generate([[4, 5, 6]], sp, seed=7)[0].tokens
  two = s.generate([[4, 5, 6], [8, 9]], sp, seed=7)[0].tokens
  other = s.generate([[4, 5, 6]], sp, seed=8)[0].tokens
  assert one == two
  assert one != other


def test_top_p_never_leaves_nucleus():
  probs = np.array([0.5, 0.25, 0.15, 0.06, 0.04], np.float32)
  logits = jnp.log(jnp.asarray(np.tile(probs, (4096, 1))))
  keys = jax.random.split(jax.random.key(0), 4096)
  toks = np.asarray(sample_tokens(logits, keys, 1.0, 0, 0.8, use_top_p=True))
  # Mass above rank 2 is 0.75 < 0.8, so the nucleus is {0, 1, 2}, drawn in proportion.
  assert set(toks.tolist()) == {0, 1, 2}
  np.testing.assert_allclose(np.bincount(toks, minlength=3) / len(toks),
                             probs[:3] / probs[:3].sum(), atol=0.03)
  toks = np.asarray(sample_tokens(logits, keys, 1.0, 0, 0.7, use_top_p=True))
  assert set(toks.tolist()) == {0, 1}
  toks = np.asarray(sample_tokens(logits, keys, 1.0, 1, 1.0, use_top_k=True))
  assert set(toks.tolist()) == {0}
  masked = np.asarray(top_k_filter(logits[:1], 2))[0]
  assert np.isfinite(masked[:2]).all() and np.isneginf(masked[2:]).all()


def test_two_level_draw_follows_the_distribution_across_blocks():
  """The draw's CDF is blocked (64 tokens): over a 300-token vocabulary (not a multiple
  of the block) whose mass spreads over several blocks, with a run of zero-probability
  tokens straddling a block edge, frequencies follow the probabilities and no
  zero-probability token is ever drawn."""
  rng = np.random.default_rng(0)
  probs = np.exp(rng.normal(size=300) * 1.5)
  probs[60:140] = 0.0
  probs[299] = 0.0
  probs /= probs.sum()
  n = 200_000
  logits = jnp.log(jnp.asarray(np.tile(probs, (n, 1)), jnp.float32))
  toks = np.asarray(jax.jit(sample_tokens)(logits, jax.random.split(jax.random.key(1), n),
                                           1.0, 0, 1.0))
  freq = np.bincount(toks, minlength=300) / n
  assert freq[60:140].sum() == 0 and freq[299] == 0
  np.testing.assert_allclose(freq, probs, atol=4e-3)


def test_first_argmax_equals_argmax_with_ties_and_infinities():
  x = np.random.default_rng(1).integers(0, 5, size=(64, 300)).astype(np.float32)  # many ties
  x[3] = -np.inf
  x[4, 7] = np.inf
  np.testing.assert_array_equal(first_argmax(jnp.asarray(x)), np.argmax(x, axis=-1))


def test_low_temperature_equals_greedy(sampler):
  prompts = [[3, 4, 5], [7, 8]]
  s = sampler
  greedy = s.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=8, stop_ids=()))
  cold = s.generate(prompts, SamplingParams(temperature=1e-4, top_k=50, top_p=0.9,
                                            max_new_tokens=8, stop_ids=()), seed=3)
  assert [g.tokens for g in greedy] == [c.tokens for c in cold]


def test_stop_ids_stop_strings_and_min_new_tokens(sampler):
  s = sampler
  prompt = [[3, 4, 5]]
  free = s.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=20, stop_ids=()))[0]
  first = free.tokens[3]
  stopped = s.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=20,
                                              stop_ids=(first,)))[0]
  k = free.tokens.index(first)
  assert stopped.tokens == free.tokens[:k + 1] and stopped.finish_reason == "stop_token"
  # min_new_tokens masks the stop id until then.
  late = s.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=20, stop_ids=(first,),
                                           min_new_tokens=k + 1))[0]
  assert first not in late.tokens[:k + 1]
  # A stop string ends the row and is cut from the text.
  tok = ByteTokenizer()
  text = tok.decode(free.tokens)
  target = text[5:7] if len(text) > 7 else None
  if target:
    got = s.generate(prompt, SamplingParams(temperature=0.0, max_new_tokens=20, stop_ids=(),
                                            stop_strings=(target,)))[0]
    assert got.finish_reason == "stop_string"
    assert target not in got.text and text.startswith(got.text)


def _free(sampler, prompt, n=24):
  return sampler.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=n,
                                                   stop_ids=()))[0].tokens


def _repeat_then_pair(toks):
  """(j, k): toks[k] also occurs earlier at j < k, followed there by another token than
  toks[k + 1], so a stop (toks[k], toks[k + 1]) matched by its first token would end at j."""
  for k in range(1, len(toks) - 1):
    for j in range(k):
      if toks[j] == toks[k] and toks[j + 1] != toks[k + 1]:
        return j, k
  return None


def _prompt_with_pair(sampler):
  for seed in range(40):
    prompt = np.random.default_rng(seed).integers(3, 256, size=5).tolist()
    free = _free(sampler, prompt)
    found = _repeat_then_pair(free)
    if found:
      return prompt, free, found[1]
  pytest.skip("no greedy generation with a repeated token found")


def test_stop_sequence_ends_only_when_all_its_tokens_are_generated(sampler):
  prompt, free, k = _prompt_with_pair(sampler)
  seq = (free[k], free[k + 1])
  got = sampler.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=24,
                                                  stop_ids=(), stop_sequences=(seq,)))[0]
  assert got.tokens == free[:k + 2] and got.finish_reason == "stop_token"
  assert got.stop_len == 2 and got.text == ByteTokenizer().decode(free[:k])
  # Under the minimum the sequence cannot complete: its last token is masked right
  # after its first one, and nowhere else.
  late = sampler.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=24,
                                                   stop_ids=(), stop_sequences=(seq,),
                                                   min_new_tokens=k + 2))[0]
  assert late.tokens[:k + 1] == free[:k + 1] and late.tokens[k + 1] != free[k + 1]


def test_suppressed_stop_sequence_is_taken_back_whole(sampler):
  prompt, free, k = _prompt_with_pair(sampler)
  seq, wait = (free[k], free[k + 1]), (87, 97)
  got = sampler.generate([prompt], SamplingParams(
      temperature=0.0, max_new_tokens=40, stop_ids=(), stop_sequences=(seq,),
      extend_ids=wait, extensions=1))[0]
  # The same as decoding up to the sequence, dropping it and re-prefilling with "Wait".
  head = free[:k] + list(wait)
  rest = sampler.generate([prompt + head], SamplingParams(
      temperature=0.0, max_new_tokens=40 - len(head), stop_ids=(), stop_sequences=(seq,)))[0]
  assert got.tokens == head + rest.tokens and got.extended_at == [k]
