"""Building blocks: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU.

Every parameter carries logical axis names (see sbp_jax/parallel/rules.py); the
model never names a mesh axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from sbp_jax.model.attention import splash_attention
from sbp_jax.model.config import ModelConfig
from sbp_jax.model.contract import contract

Array = jax.Array

# Embeddings: unit-scale normal so that
# the tied output projection starts with O(1) logits after the final norm.
embed_init = nn.initializers.normal(stddev=1.0)


def logical(init, names):
  return nn.with_logical_partitioning(init, names)


def constrain(x: Array, names: tuple[str | None, ...]) -> Array:
  """Activation sharding hint by logical names (a no-op outside a mesh context)."""
  return nn.with_logical_constraint(x, names)


class RMSNorm(nn.Module):
  eps: float = 1e-5
  dtype: jnp.dtype = jnp.bfloat16
  param_dtype: jnp.dtype = jnp.float32
  axis_name: str = "norm"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", logical(nn.initializers.ones, (self.axis_name,)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (y * scale.astype(jnp.float32)).astype(self.dtype)


def rope(x: Array, positions: Array, theta: float) -> Array:
  """Rotary embedding in the 'rotate half' layout used by Llama in transformers.

  x: [batch, length, heads, head_dim]; positions: [batch, length] (int).
  The first and second halves of head_dim are the two components of each
  rotated pair, so imported checkpoints in that layout need no permutation.
  """
  half = x.shape[-1] // 2
  freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions.astype(jnp.float32)[..., None] * freq  # [b, l, half]
  sin = jnp.sin(angle)[:, :, None, :]
  cos = jnp.cos(angle)[:, :, None, :]
  x32 = x.astype(jnp.float32)
  x1, x2 = x32[..., :half], x32[..., half:]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def attention_mask(q_segment: Array | None, kv_segment: Array | None,
                   q_slot: Array, kv_slot: Array) -> Array:
  """Boolean mask [batch, 1, q_len, kv_len]: causal by slot, same segment.

  Slots are the indices along the (possibly cached) key axis; segment id 0 is
  padding and attends nowhere but itself.
  """
  mask = q_slot[:, :, None] >= kv_slot[:, None, :]
  if q_segment is not None:
    mask &= q_segment[:, :, None] == kv_segment[:, None, :]
  return mask[:, None]


def _query_blocks(t: int) -> int:
  """How many query blocks causal attention splits a length-t sequence into: up to 8,
  each of at least 64 queries and all equal (so 1 unless t divides)."""
  for n in range(min(8, t // 64), 1, -1):
    if t % n == 0:
      return n
  return 1


def dot_product_attention(q: Array, k: Array, v: Array, segment_ids: Array | None,
                          impl: str) -> Array:
  """Causal softmax attention within segments, with grouped kv heads (training and
  any forward without a KV cache).

  q: [b, t, heads, d]; k, v: [b, t, kv_heads, d]; segment_ids: [b, t] (0 is padding,
  which attends only to itself) or None (one sequence per row). Logits and softmax
  in float32. "einsum" lays each kv head's g = heads / kv_heads query heads out as one
  [g * t, d] matrix, so both products are plain batched matmuls over (b, kv_heads), and
  splits the queries into blocks: block i attends only to the keys up to its own end,
  since causality masks the rest, which skips close to half of the work (forward and
  backward at 8 x 256 tokens, 4 heads, 2 kv heads, on one CPU core: 61 -> 22 ms).
  """
  b, t, h, d = q.shape
  kvh = k.shape[2]
  g = h // kvh
  slot = jnp.arange(t, dtype=jnp.int32)
  if impl == "dot_product":
    # XLA on CPU/TPU, cuDNN flash attention on GPU where shapes allow.
    seg = jnp.ones((b, t), jnp.int32) if segment_ids is None else segment_ids
    bslot = jnp.broadcast_to(slot, (b, t))
    return jax.nn.dot_product_attention(q, k, v, mask=attention_mask(seg, seg, bslot, bslot))
  k = constrain(k.transpose(0, 2, 3, 1), ("activation_batch", "activation_kv_heads", None, None))
  v = constrain(v.transpose(0, 2, 1, 3), ("activation_batch", "activation_kv_heads", None, None))
  n = _query_blocks(t)
  size = t // n
  outs = []
  for i in range(n):
    lo, hi = i * size, (i + 1) * size   # queries lo..hi-1 see keys 0..hi-1
    qb = q[:, lo:hi].reshape(b, size, kvh, g, d).transpose(0, 2, 3, 1, 4)
    qb = constrain(qb.reshape(b, kvh, g * size, d),
                   ("activation_batch", "activation_kv_heads", None, None))
    logits = jnp.einsum("bkqd,bkds->bkqs", qb, k[..., :hi],
                        preferred_element_type=jnp.float32) / jnp.sqrt(jnp.float32(d))
    mask = jnp.tile(slot[lo:hi], g)[:, None] >= slot[None, :hi]           # [g * size, hi]
    mask = mask[None, None]
    if segment_ids is not None:
      q_seg = jnp.tile(segment_ids[:, lo:hi], (1, g))                     # [b, g * size]
      mask = mask & (q_seg[:, None, :, None] == segment_ids[:, None, None, :hi])
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkqs,bksd->bkqd", probs, v[:, :, :hi])
    outs.append(out.reshape(b, kvh, g, size, d).transpose(0, 3, 1, 2, 4).reshape(b, size, h, d))
  return outs[0] if n == 1 else jnp.concatenate(outs, axis=1)


def write_cache(cache: dict, k: Array, v: Array, cache_index: Array) -> dict:
  """The cache with row i's t new keys/values written at slots cache_index[i] + 0..t-1.

  cache: {"k": [b * kv_heads, head_dim, s], "v": [b * kv_heads, s, head_dim]} (see
  init_cache); k, v: [b, t, kv_heads, head_dim]. One scatter per buffer, in place. A
  start is clamped so the t slots fit, as dynamic_update_slice would; the indices are
  then promised in bounds, because a checked write reads the old slots, and XLA then
  copies the whole cache at every step.
  """
  b, t, kvh, hd = k.shape
  s = cache["v"].shape[1]
  rows = jnp.arange(b * kvh)[:, None]
  start = jnp.repeat(jnp.clip(cache_index, 0, s - t), kvh)
  slots = start[:, None] + jnp.arange(t, dtype=start.dtype)[None, :]        # [n, t]
  flat = lambda x, buf: x.transpose(0, 2, 1, 3).reshape(b * kvh, t, hd).astype(buf.dtype)
  put = dict(mode="promise_in_bounds", unique_indices=True, indices_are_sorted=True)
  return {"k": cache["k"].at[rows, :, slots].set(flat(k, cache["k"]), **put),
          "v": cache["v"].at[rows, slots].set(flat(v, cache["v"]), **put)}


def cached_attention(q: Array, k: Array, v: Array, q_slot: Array) -> Array:
  """Grouped-query attention over a KV cache (prefill and decode).

  q: [b, t, heads, d]; k: [b * kv_heads, d, s] and v: [b * kv_heads, s, d], the
  cache's own layout; q_slot: [b, t] each query's cache slot (it attends to slots
  at or before it). A kv head's t * group queries form one matrix, so both
  products are plain batched matmuls that read the cache as it lies: logits are
  [t * g, d] x [d, s], with s contiguous (on CPU, 5x faster than contracting over a
  minor d), and one batch axis (two would be merged by a reshape that XLA fuses
  with the cache write, duplicating it, when b is 1). Logits and softmax in float32.
  """
  b, t, h, d = q.shape
  n, _, s = k.shape
  kvh = n // b
  g = h // kvh
  q = q.reshape(b, t, kvh, g, d).transpose(0, 2, 1, 3, 4).reshape(n, t * g, d)
  q = constrain(q, ("cache_rows", None, None))
  logits = jnp.einsum("nqd,nds->nqs", q, k, preferred_element_type=jnp.float32)
  logits = logits / jnp.sqrt(jnp.float32(d))
  pos = jnp.repeat(jnp.repeat(q_slot, g, axis=1), kvh, axis=0)              # [n, t * g]
  mask = jnp.arange(s, dtype=pos.dtype)[None, None, :] <= pos[:, :, None]
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("nqs,nsd->nqd", probs, v)
  return out.reshape(b, kvh, t, g, d).transpose(0, 2, 1, 3, 4).reshape(b, t, h, d)


class Projection(nn.Module):
  """y = x . kernel over the last `len(in_axes)` dims of x, with an explicit
  full-rank kernel (so its logical axes apply at init, unlike nn.DenseGeneral,
  which initialises a flattened kernel and reshapes it)."""

  features: tuple[int, ...]
  in_axes: tuple[str, ...]
  out_axes: tuple[str, ...]
  use_bias: bool = False
  dtype: jnp.dtype = jnp.bfloat16
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    n_in = len(self.in_axes)
    in_shape = x.shape[-n_in:]
    fan_in_axes = tuple(range(n_in))
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal",
                                            in_axis=fan_in_axes,
                                            out_axis=tuple(range(n_in, n_in + len(self.features))))
    kernel = self.param("kernel", logical(init, self.in_axes + self.out_axes),
                        in_shape + tuple(self.features), self.param_dtype)
    y = contract(x.astype(self.dtype), kernel.astype(self.dtype), n_in)
    if self.use_bias:
      bias = self.param("bias", logical(nn.initializers.zeros, self.out_axes),
                        tuple(self.features), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


class Attention(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x: Array, positions: Array, segment_ids: Array | None,
               cache: dict | None, cache_index: Array | None):
    """cache: this layer's {"k", "v"} (see init_cache) or None; cache_index: [b] the
    slot of each row's first new token, or None for an empty cache (prefill).
    Returns (output, the updated cache)."""
    cfg = self.cfg
    dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    hd = cfg.resolved_head_dim

    def proj(name, heads, axis):
      return Projection((heads, hd), ("embed",), (axis, "head_dim"), cfg.qkv_bias, dtype,
                        pdtype, name=name)(x)

    q = proj("query", cfg.num_heads, "heads")
    k = proj("key", cfg.num_kv_heads, "kv_heads")
    v = proj("value", cfg.num_kv_heads, "kv_heads")
    if cfg.qk_norm:
      q = RMSNorm(cfg.norm_eps, dtype, pdtype, "head_dim", name="query_norm")(q)
      k = RMSNorm(cfg.norm_eps, dtype, pdtype, "head_dim", name="key_norm")(k)
    q = rope(q, positions, cfg.rope_theta)
    k = rope(k, positions, cfg.rope_theta)
    q = constrain(q, ("activation_batch", "activation_length", "activation_heads", None))
    k = constrain(k, ("activation_batch", "activation_length", "activation_kv_heads", None))
    v = constrain(v, ("activation_batch", "activation_length", "activation_kv_heads", None))

    b, t = x.shape[:2]
    q_slot = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    if cache is None:
      if cfg.attention == "splash":
        out = splash_attention(q, k, v, segment_ids)
      else:
        out = dot_product_attention(q, k, v, segment_ids, cfg.attention)
      new_cache = None
    elif cache_index is None:
      # Prefill of an empty cache: the t tokens fill slots 0..t-1 and see only each
      # other, so attention is the causal one of training (query blocks that skip the
      # masked keys), not t queries against every slot of the cache.
      new_cache = write_cache(cache, k, v, jnp.zeros((b,), jnp.int32))
      out = dot_product_attention(q, k, v, None,
                                  "dot_product" if cfg.attention == "dot_product" else "einsum")
    else:
      # Write the t new keys/values at each sequence's own offset, then attend causally
      # over slots; stale slots beyond the offset are masked.
      new_cache = write_cache(cache, k, v, cache_index)
      out = cached_attention(q, new_cache["k"].astype(dtype), new_cache["v"].astype(dtype),
                             q_slot + cache_index[:, None])

    out = constrain(out, ("activation_batch", "activation_length", "activation_heads", None))
    out = Projection((cfg.d_model,), ("heads", "head_dim"), ("embed",), False, dtype, pdtype,
                     name="out")(out)
    return out, new_cache


class MLP(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.cfg
    dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)

    def dense(name, features, axes):
      return Projection((features,), axes[:1], axes[1:], False, dtype, pdtype, name=name)

    gate = dense("gate", cfg.d_ffn, ("embed", "mlp"))(x)
    up = dense("up", cfg.d_ffn, ("embed", "mlp"))(x)
    h = nn.silu(gate) * up
    h = constrain(h, ("activation_batch", "activation_length", "activation_mlp"))
    return dense("down", cfg.d_model, ("mlp", "embed"))(h)
