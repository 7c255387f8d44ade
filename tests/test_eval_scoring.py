"""Eval scoring: perplexity against numpy, choice rules, partial scoring, invariance."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbp_jax.eval import formats
from sbp_jax.eval.scorer import Request, Scorer, rolling_requests
from sbp_jax.generate.text_codec import ByteTokenizer
from sbp_jax.model import ModelConfig, Transformer
from sbp_jax.parallel import make_mesh, make_rules

TOK = ByteTokenizer()
V = TOK.vocab_size  # 264


def bigram_model(table: np.ndarray):
  """A Transformer whose next-token logits are exactly table[current token].

  One-hot embeddings (d_model = vocab), zero attention and MLP output
  projections (each block is the identity), so logits = rmsnorm(onehot) @ W;
  W is table scaled by the known RMSNorm factor of a one-hot vector.
  """
  cfg = ModelConfig(vocab_size=V, num_layers=2, d_model=V, d_ffn=16, num_heads=4,
                    num_kv_heads=2, max_seq_len=64, dtype="float32", remat_policy="none")
  params = jax.device_get(Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32)))
  params = jax.tree.map(np.array, nn_unbox(params["params"]))  # writable copies
  params["embedding"] = np.eye(V, dtype=np.float32)
  params["layers"]["attention"]["out"]["kernel"][:] = 0
  params["layers"]["mlp"]["down"]["kernel"][:] = 0
  norm = 1.0 / math.sqrt(1.0 / V + cfg.norm_eps)
  params["output"]["kernel"] = (table / norm).astype(np.float32)
  return cfg, params


def nn_unbox(tree):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  return nn.meta.unbox(tree)


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def bigram():
  """(scorer, numpy log-probabilities): a random table plus designed transitions."""
  rng = np.random.default_rng(0)
  table = rng.normal(0, 0.3, (V, V)).astype(np.float32) + _designed_table()
  cfg, params = bigram_model(table)
  return Scorer(cfg, params, batch_size=4), np_log_softmax(table.astype(np.float64))


@pytest.fixture(scope="module")
def random_model():
  cfg = ModelConfig(vocab_size=V, num_layers=2, d_model=32, d_ffn=64, num_heads=4,
                    num_kv_heads=2, max_seq_len=64, dtype="float32", remat_policy="none")
  params = nn_unbox(Transformer(cfg).init(jax.random.key(1), jnp.zeros((1, 4), jnp.int32))["params"])
  return cfg, params


def _ctx(scorer, prefix=()):
  return formats.Context(scorer=scorer, tokenizer=TOK, prefix=tuple(prefix), rolling_overlap=8)


def test_perplexity_matches_numpy_bigram(bigram):
  scorer, logp = bigram
  docs = ["The cat sat on the mat.", "A much longer second document, long enough to need "
          "several scoring windows of the 64-token model: " + "abc def ghi " * 12]
  metrics, per = formats.evaluate_records("perplexity", [{"text": d} for d in docs], _ctx(scorer))
  # Independent computation: every byte after the first, given the previous one.
  nll, n = 0.0, 0
  for d in docs:
    ids = list(d.encode())
    nll -= sum(logp[a, b] for a, b in zip(ids[:-1], ids[1:]))
    n += len(ids) - 1
  assert metrics["tokens"] == n
  assert metrics["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-5)
  assert [p["tokens"] for p in per] == [len(d.encode()) - 1 for d in docs]
  # With a document-start prefix token, the first byte is scored too.
  eos = TOK.eos_ids[0]
  m2, _ = formats.evaluate_records("perplexity", [{"text": d} for d in docs], _ctx(scorer, [eos]))
  nll2 = nll - sum(logp[eos, d.encode()[0]] for d in docs)
  assert m2["tokens"] == n + len(docs)
  assert m2["perplexity"] == pytest.approx(math.exp(nll2 / (n + len(docs))), rel=1e-5)


def test_scores_match_unpadded_forward(random_model):
  """Padding, bucketing, batching and left-truncation leave each score equal to a
  plain forward pass over that one sequence."""
  cfg, params = random_model
  rng = np.random.default_rng(0)
  # Short, bucket-crossing, exactly max_len inputs, and one left-truncated.
  reqs = [Request(tuple(rng.integers(0, 256, n).tolist()), k) for n, k in
          [(5, 2), (17, 16), (65, 64), (90, 5)]]
  scores = Scorer(cfg, params, batch_size=3, max_len=64).score(reqs)
  model = Transformer(cfg)
  for r, s in zip(reqs, scores):
    toks = np.asarray(r.tokens[-65:])
    logits = np.asarray(model.apply({"params": params}, toks[None, :-1])["logits"][0], np.float64)
    lp = np_log_softmax(logits)[np.arange(len(toks) - 1), toks[1:]][-r.n_scored:]
    assert s.logprob == pytest.approx(lp.sum(), rel=1e-5, abs=1e-4)
    assert s.n_tokens == r.n_scored
    assert s.greedy == bool(np.all(logits.argmax(-1)[-r.n_scored:] == toks[1:][-r.n_scored:]))


def test_batch_size_order_and_mesh_invariance(random_model):
  cfg, params = random_model
  rng = np.random.default_rng(1)
  reqs = [Request(tuple(rng.integers(0, 256, int(n)).tolist()), int(k))
          for n, k in zip(rng.integers(3, 30, 23), rng.integers(1, 3, 23))]
  ref = Scorer(cfg, params, batch_size=1).score(reqs)
  perm = rng.permutation(len(reqs))
  for bs, mesh in [(1, None), (5, None), (16, make_mesh((8, 1, 1)))]:
    s = Scorer(cfg, params, mesh=mesh, rules=make_rules(), batch_size=bs)
    got = s.score([reqs[i] for i in perm])
    if bs == 1:
      assert [got[j] for j in np.argsort(perm)] == ref  # same shapes: bit-identical
    # Other batch sizes / meshes change matmul shapes: equal to float32 rounding.
    for j, i in enumerate(perm):
      assert got[j].logprob == pytest.approx(ref[i].logprob, rel=1e-6), (bs, i)
      assert (got[j].n_tokens, got[j].greedy) == (ref[i].n_tokens, ref[i].greedy)
    # Reordering at a fixed batch size and mesh is bit-identical.
    assert s.score(reqs) == [got[j] for j in np.argsort(perm)]


def test_rolling_windows_cover_each_token_once():
  toks = list(range(100, 200))
  for prefix, overlap in [((), 0), ((7,), 0), ((7,), 5), ((), 31)]:
    reqs = rolling_requests(toks, prefix, max_len=32, overlap=overlap)
    seq = list(prefix) + toks
    scored = []
    for r in reqs:
      assert len(r.tokens) - 1 <= 32
      scored += list(r.tokens[-r.n_scored:])
    assert scored == (toks if prefix else toks[1:])
    # Each window's context is the text just before what it scores.
    for r in reqs:
      start = seq.index(r.tokens[0])
      assert list(r.tokens) == seq[start:start + len(r.tokens)]


def _designed_table() -> np.ndarray:
  """Logits 0 everywhere except a few designed transitions (bytes)."""
  t = np.zeros((V, V), np.float32)
  b = lambda c: ord(c)
  t[b(" "), b("x")] = 3.0   # ' ' -> 'x' likely
  t[b("x"), b("x")] = 8.0   # 'x' -> 'x' very likely
  t[b(" "), b("q")] = 4.0   # ' ' -> 'q' likelier than 'x'
  t[b("q"), b("z")] = 6.0   # so " qz" beats " xxxxxx" in total but not per character
  t[b("x"), b(" ")] = 5.0   # partial scoring: after an option ending in 'x', ' ' is likely
  t[b("k"), b(" ")] = -3.0
  # LAMBADA: " qz" is the greedy path after "n"
  t[b("n"), b(" ")] = 2.0
  t[b("h"), b(" ")] = 2.0
  return t


def test_multiple_choice_picks_highest_raw_and_normalised(bigram):
  scorer, logp = bigram
  choices = ["qz", "xxxxxx", "ab"]
  rec = {"question": "Pick one", "choices": choices, "answer": 1}
  metrics, per = formats.evaluate_records("multiple_choice", [rec], _ctx(scorer))
  # Independent: log-likelihood of " <choice>" after the prompt's final ':'.
  ll = []
  for c in choices:
    ids = list((":" + " " + c).encode())
    ll.append(sum(logp[a, b] for a, b in zip(ids[:-1], ids[1:])))
  norm = [l / len(" " + c) for l, c in zip(ll, choices)]
  assert np.argmax(ll) != np.argmax(norm)  # the case separates the two rules
  assert per[0]["pred"] == int(np.argmax(ll)) == 0
  assert per[0]["pred_norm"] == int(np.argmax(norm)) == 1
  np.testing.assert_allclose(per[0]["logprobs"], ll, rtol=1e-5)
  assert metrics["acc"] == 0.0 and metrics["acc_norm"] == 1.0


def test_winogrande_partial_scoring(bigram):
  rec = {"sentence": "The ox chased the yak because _ was angry.", "options": ["the ox", "the yak"],
         "answer": 0}
  assert formats.winogrande_pairs(rec) == [("The ox chased the yak because the ox", " was angry."),
                                         ("The ox chased the yak because the yak", " was angry.")]
  scorer, logp = bigram
  recs = [rec, {**rec, "options": ["the yak", "the ox"], "answer": 1},
          {"sentence": "Sam gave Kim a book since _ liked reading.", "options": ["Kim", "Sam"],
           "answer": 1}]
  metrics, per = formats.evaluate_records("winogrande", recs, _ctx(scorer))
  for r, p in zip(recs, per):
    before, after = r["sentence"].split("_")
    # Only the continuation is scored: the same tokens under each filled-in context.
    ll = []
    for o in r["options"]:
      ids = list((before + o)[-1:].encode() + after.encode())
      ll.append(sum(logp[a, b] for a, b in zip(ids[:-1], ids[1:])))
    np.testing.assert_allclose(p["logprobs"], ll, rtol=1e-5)
    assert p["pred"] == int(np.argmax(ll))
  # 'x' -> ' ' is likely and 'k' -> ' ' unlikely, so "the ox" wins in either order.
  assert per[0]["pred"] == 0 and per[1]["pred"] == 1
  assert metrics["acc"] == pytest.approx(np.mean([p["pred"] == r["answer"] for r, p in
                                                  zip(recs, per)]))


def test_lambada_last_word_accuracy_and_perplexity(bigram):
  scorer, logp = bigram
  recs = [{"text": "many words then qz"}, {"text": "and it ended with xxxx"}]
  metrics, per = formats.evaluate_records("lambada", recs, _ctx(scorer))
  greedy = logp.argmax(-1)
  lp, n, hits = 0.0, 0, []
  for r in recs:
    ctx, word = r["text"].rsplit(" ", 1)
    ids = list((ctx[-1] + " " + word).encode())
    pairs = list(zip(ids[:-1], ids[1:]))
    lp += sum(logp[a, b] for a, b in pairs)
    n += len(pairs)
    hits.append(all(greedy[a] == b for a, b in pairs))
  assert hits == [True, False]  # ' ' -> 'q' outranks ' ' -> 'x'
  assert [p["correct"] for p in per] == hits
  assert metrics["acc"] == 0.5 and metrics["tokens"] == n
  assert metrics["perplexity"] == pytest.approx(math.exp(-lp / n), rel=1e-5)
