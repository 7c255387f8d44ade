"""Model properties: masking, packing, GQA, RoPE, QK-norm, parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import pytest

from configs.model import presets
from sbp_jax.model import ModelConfig, Transformer, count_params
from sbp_jax.model.layers import dot_product_attention, rope


def tiny(**kw):
  return ModelConfig.from_dict(presets.get("tiny", dtype="float32", **kw))


def init(cfg, seed=0):
  model = Transformer(cfg)
  params = model.init(jax.random.key(seed), jnp.zeros((1, 8), jnp.int32))["params"]
  return model, nn.meta.unbox(params)


def logits(model, params, tokens, **kw):
  return np.asarray(model.apply({"params": params}, jnp.asarray(tokens), **kw)["logits"])


def test_causal_mask():
  model, params = init(tiny())
  rng = np.random.default_rng(0)
  a = rng.integers(0, 512, (2, 16))
  b = a.copy()
  b[:, 9] = (b[:, 9] + 7) % 512
  la, lb = logits(model, params, a), logits(model, params, b)
  np.testing.assert_allclose(la[:, :9], lb[:, :9], atol=1e-6)
  assert np.abs(la[:, 9:] - lb[:, 9:]).max() > 1e-3


def test_packed_segments_do_not_attend_across():
  model, params = init(tiny())
  rng = np.random.default_rng(1)
  seg = np.array([[1] * 6 + [2] * 5 + [0] * 3])
  pos = np.array([list(range(6)) + list(range(5)) + [0] * 3])
  a = rng.integers(0, 512, (1, 14))
  b = a.copy()
  b[0, :6] = rng.integers(0, 512, 6)  # change only the first document
  kw = dict(positions=jnp.asarray(pos), segment_ids=jnp.asarray(seg))
  la, lb = logits(model, params, a, **kw), logits(model, params, b, **kw)
  np.testing.assert_allclose(la[0, 6:11], lb[0, 6:11], atol=1e-6)
  # The second document alone, unpacked, gives the same logits.
  alone = logits(model, params, a[:, 6:11])
  np.testing.assert_allclose(la[0, 6:11], alone[0], atol=1e-5)


def _mha_reference(q, k, v):
  """Plain causal multi-head attention in numpy (float64)."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  t, d = q.shape[1], q.shape[-1]
  s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
  s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bhts,bshd->bthd", p, v)


@pytest.mark.parametrize("impl", ["einsum", "dot_product"])
def test_attention_equals_mha_and_gqa_equals_repeated_kv(impl):
  rng = np.random.default_rng(2)
  b, t, h, d = 2, 7, 4, 8
  q = rng.normal(size=(b, t, h, d)).astype(np.float32)
  # kv_heads == heads: standard MHA.
  k = rng.normal(size=(b, t, h, d)).astype(np.float32)
  v = rng.normal(size=(b, t, h, d)).astype(np.float32)
  out = dot_product_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), None, impl)
  np.testing.assert_allclose(out, _mha_reference(q, k, v), atol=1e-5)
  # kv_heads = 2: each kv head serves 2 consecutive query heads.
  k2, v2 = k[:, :, :2], v[:, :, :2]
  out = dot_product_attention(jnp.asarray(q), jnp.asarray(k2), jnp.asarray(v2), None, impl)
  ref = _mha_reference(q, np.repeat(k2, 2, axis=2), np.repeat(v2, 2, axis=2))
  np.testing.assert_allclose(out, ref, atol=1e-5)


def _segment_reference(q, k, v, seg):
  """Causal attention within segments in numpy (float64), kv heads repeated."""
  q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
  rep = q.shape[2] // k.shape[2]
  k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
  t = q.shape[1]
  s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
  mask = np.tril(np.ones((t, t), bool))[None] & (seg[:, :, None] == seg[:, None, :])
  s = np.where(mask[:, None], s, -np.inf)
  p = np.exp(s - s.max(-1, keepdims=True))
  return np.einsum("bhts,bshd->bthd", p / p.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("t", [256, 320, 100])  # 4 and 5 query blocks, and one
def test_blocked_causal_attention_with_segments_values_and_grads(t):
  """The einsum path splits queries into blocks that see only keys up to their end:
  values equal a float64 reference over packed segments (with padding), and its
  gradients equal those of the unblocked dot_product path."""
  rng = np.random.default_rng(5)
  b, h, kvh, d = 2, 4, 2, 8
  q, k, v = (jnp.asarray(rng.normal(size=(b, t, n, d)), jnp.float32) for n in (h, kvh, kvh))
  cuts = sorted(rng.choice(np.arange(1, t), 3, replace=False))
  seg = np.zeros((b, t), np.int32)
  for i, (lo, hi) in enumerate(zip([0] + cuts, cuts + [t - 5])):
    seg[:, lo:hi] = i + 1                  # three documents, then 5 padding slots (id 0)
  seg = jnp.asarray(seg)
  out = jax.jit(lambda q, k, v: dot_product_attention(q, k, v, seg, "einsum"))(q, k, v)
  np.testing.assert_allclose(out, _segment_reference(q, k, v, np.asarray(seg)), atol=2e-5)
  r = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
  grads = {impl: jax.grad(lambda *a, impl=impl: jnp.sum(
      dot_product_attention(*a, seg, impl) * r), (0, 1, 2))(q, k, v)
           for impl in ("einsum", "dot_product")}
  for a, b_ in zip(grads["einsum"], grads["dot_product"]):
    np.testing.assert_allclose(a, b_, atol=1e-4)


def test_attention_impls_agree_in_model():
  a, params = init(tiny(attention="einsum"))
  b, _ = init(tiny(attention="dot_product"))
  tokens = np.random.default_rng(3).integers(0, 512, (2, 12))
  np.testing.assert_allclose(logits(a, params, tokens), logits(b, params, tokens), atol=1e-4)


def test_rope_scores_depend_only_on_relative_position():
  rng = np.random.default_rng(4)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

  def score(m, n):
    qm = rope(q, jnp.array([[m]]), 5e5)
    kn = rope(k, jnp.array([[n]]), 5e5)
    return float(jnp.sum(qm * kn))

  base = score(7, 3)
  for shift in (1, 50, 1000):
    assert score(7 + shift, 3 + shift) == pytest.approx(base, rel=1e-4, abs=1e-4)
  assert abs(score(9, 3) - base) > 1e-3  # a different offset gives a different score
  # Norm preserving.
  np.testing.assert_allclose(jnp.linalg.norm(rope(q, jnp.array([[123]]), 5e5)),
                             jnp.linalg.norm(q), rtol=1e-5)


def test_qk_norm_switch_changes_graph():
  on_model, on = init(tiny(qk_norm=True))
  off_model, off = init(tiny(qk_norm=False))
  assert "query_norm" in on["layers"]["attention"]
  assert "query_norm" not in off["layers"]["attention"]
  # Same shared weights, scaled q/k: with QK-norm the logits are invariant to
  # the scale of the query kernel; without it they are not.
  tokens = np.random.default_rng(5).integers(0, 512, (1, 10))

  def scaled(p):
    p = jax.tree.map(lambda x: x, p)
    p["layers"]["attention"]["query"]["kernel"] = p["layers"]["attention"]["query"]["kernel"] * 5
    return p
  np.testing.assert_allclose(logits(on_model, on, tokens), logits(on_model, scaled(on), tokens),
                             atol=1e-4)
  shared = {k: v for k, v in on.items()}
  shared["layers"] = dict(on["layers"])
  shared["layers"]["attention"] = {k: v for k, v in on["layers"]["attention"].items()
                                   if "norm" not in k}
  assert np.abs(logits(off_model, shared, tokens)
                - logits(off_model, scaled(shared), tokens)).max() > 1e-3


def test_scan_and_unrolled_layers_agree():
  scanned, params = init(tiny())
  unrolled = Transformer(tiny(scan_layers=False))
  per_layer = {k: v for k, v in params.items() if k != "layers"}
  for i in range(2):
    per_layer[f"layer_{i}"] = jax.tree.map(lambda x: x[i], params["layers"])
  tokens = np.random.default_rng(6).integers(0, 512, (2, 9))
  np.testing.assert_allclose(logits(scanned, params, tokens),
                             logits(unrolled, per_layer, tokens), atol=1e-5)


@pytest.mark.parametrize("name,expected_billions", [("3b", 2.889), ("6b", 6.879)])
def test_param_count_matches_tree_without_allocating(name, expected_billions):
  cfg = ModelConfig.from_dict(presets.get(name))
  shapes = jax.eval_shape(
      lambda: Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
  n = sum(x.size for x in jax.tree.leaves(nn.meta.unbox(shapes)))
  assert n == count_params(cfg)
  assert n / 1e9 == pytest.approx(expected_billions, abs=1e-3)


def test_presets_match_table_b9():
  for name, (layers, d, ffn, heads, kv) in {"3b": (26, 3072, 8064, 24, 8),
                                            "6b": (32, 4096, 13056, 32, 8)}.items():
    c = presets.get(name)
    assert (c.num_layers, c.d_model, c.d_ffn, c.num_heads, c.num_kv_heads) == (
        layers, d, ffn, heads, kv)
    assert c.vocab_size == 49152 and c.rope_theta == 5e5 and c.qk_norm


def test_bad_config_errors_name_the_field():
  with pytest.raises(ValueError, match="num_kv_heads"):
    tiny(num_kv_heads=3)
  with pytest.raises(ValueError, match="nonsense"):
    ModelConfig.from_dict({"nonsense": 1})


def test_logits_at_equals_the_full_logits_at_those_positions():
  cfg = ModelConfig.from_dict(presets.get("tiny", dtype="float32", remat_policy="none"))
  model = Transformer(cfg)
  tokens = jax.random.randint(jax.random.key(3), (3, 11), 0, cfg.vocab_size)
  params = model.init(jax.random.key(0), tokens)["params"]
  full = model.apply({"params": params}, tokens)["logits"]
  at = jnp.array([10, 0, 4])
  one = model.apply({"params": params}, tokens, logits_at=at)["logits"]
  assert one.shape == (3, 1, cfg.vocab_size)
  np.testing.assert_allclose(one[:, 0], full[jnp.arange(3), at], atol=1e-5)
