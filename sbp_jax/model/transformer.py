"""The decoder: embed -> scanned pre-norm blocks -> final norm -> logits.

One forward serves training (segment ids and positions for packed sequences),
prefill and incremental decode (a functional KV cache passed in and returned),
and embedding extraction (hidden states of every layer).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from sbp_jax.model.config import ModelConfig
from sbp_jax.model.layers import MLP, Attention, Projection, RMSNorm, constrain, embed_init, logical

Array = jax.Array

_REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Block(nn.Module):
  """x + attn(norm(x)); x + mlp(norm(x)). Signature fits nn.scan: (carry, xs)."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, x, layer_cache, positions, segment_ids, cache_index, return_hidden):
    cfg = self.cfg
    dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    x = constrain(x, ("activation_batch", "activation_length", "activation_embed"))
    h, new_cache = Attention(cfg, name="attention")(
        RMSNorm(cfg.norm_eps, dtype, pdtype, name="attention_norm")(x),
        positions, segment_ids, layer_cache, cache_index)
    x = x + h
    x = x + MLP(cfg, name="mlp")(RMSNorm(cfg.norm_eps, dtype, pdtype, name="mlp_norm")(x))
    return x, (new_cache, x if return_hidden else None)


def _block_class(cfg: ModelConfig):
  if cfg.remat_policy == "none":
    return Block
  # Argument 6 (counting self) is return_hidden, a Python bool.
  return nn.remat(Block, policy=_REMAT[cfg.remat_policy], prevent_cse=not cfg.scan_layers,
                  static_argnums=(6,))


class Transformer(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens: Array, positions: Array | None = None,
               segment_ids: Array | None = None, cache: dict | None = None,
               cache_index: Array | None = None, return_hidden: bool = False,
               logits_at: Array | None = None):
    """Returns a dict with `logits` [b, t, vocab] (float32), `cache` (when a
    cache was given) and `hidden` [layers, b, t, d] (when return_hidden).

    tokens: [b, t] int. positions default to 0..t-1 (plus cache_index when
    decoding). segment_ids: [b, t], 0 = padding; None = one sequence per row.
    cache: one {"k", "v"} per layer (see init_cache); cache_index: [b] slot at which
    the first of the t new tokens is written, or None when the cache is empty (a
    prefill: the tokens fill slots 0..t-1 and attend only to each other). Decode with
    scan_layers=False (see unstack_layers): the layer loop then updates each layer's
    buffers in place, where a scan would restack (copy) them.
    logits_at: [b] one position per row; logits are then [b, 1, vocab] for it
    alone (a prefill needs only the last prompt position's, and the full
    [b, t, vocab] tensor would dominate its memory).
    """
    cfg = self.cfg
    dtype, pdtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    b, t = tokens.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
      if cache_index is not None:
        positions = positions + cache_index[:, None]

    embedding = self.param("embedding", logical(embed_init, ("vocab", "embed")),
                           (cfg.vocab_size, cfg.d_model), pdtype)
    x = jnp.take(embedding, tokens, axis=0).astype(dtype)
    x = constrain(x, ("activation_batch", "activation_length", "activation_embed"))

    block = _block_class(cfg)
    if cfg.scan_layers:
      layers = nn.scan(
          block, variable_axes={"params": 0}, split_rngs={"params": True},
          in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
          length=cfg.num_layers, metadata_params={nn.PARTITION_NAME: "layers"},
      )(cfg, name="layers")
      stacked = None if cache is None else jax.tree.map(lambda *a: jnp.stack(a), *cache)
      x, (new_cache, hidden) = layers(x, stacked, positions, segment_ids, cache_index,
                                      return_hidden)
      if cache is not None:
        new_cache = [jax.tree.map(lambda c, i=i: c[i], new_cache) for i in range(cfg.num_layers)]
    else:
      caches, hiddens = [], []
      for i in range(cfg.num_layers):
        x, (c, h) = block(cfg, name=f"layer_{i}")(x, None if cache is None else cache[i],
                                                  positions, segment_ids, cache_index,
                                                  return_hidden)
        caches.append(c)
        hiddens.append(h)
      new_cache = caches if cache is not None else None
      hidden = None if hiddens[0] is None else jnp.stack(hiddens)

    if logits_at is not None:
      x = jnp.take_along_axis(x, logits_at[:, None, None].astype(jnp.int32), axis=1)
    x = RMSNorm(cfg.norm_eps, dtype, pdtype, name="final_norm")(x)
    if cfg.tie_embeddings:
      logits = jnp.einsum("btd,vd->btv", x, embedding.astype(dtype),
                          preferred_element_type=jnp.float32)
    else:
      logits = Projection((cfg.vocab_size,), ("embed",), ("vocab",), False, dtype, pdtype,
                          name="output")(x).astype(jnp.float32)
    logits = constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))
    out = {"logits": logits}
    if cache is not None:
      out["cache"] = new_cache
    if return_hidden:
      out["hidden"] = hidden
    return out


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> list[dict]:
  """An empty KV cache for `batch` sequences of up to `max_len` tokens: one {"k", "v"}
  per layer, k [batch * kv_heads, head_dim, max_len] and v [batch * kv_heads, max_len,
  head_dim] (row i * kv_heads + j is sequence i's kv head j): the layouts the attention
  products read without a transpose (see layers.cached_attention)."""
  n, hd = batch * cfg.num_kv_heads, cfg.resolved_head_dim
  dtype = jnp.dtype(dtype or cfg.dtype)
  return [{"k": jnp.zeros((n, hd, max_len), dtype), "v": jnp.zeros((n, max_len, hd), dtype)}
          for _ in range(cfg.num_layers)]


# Logical axes of each cache buffer (rows are sequence-major, kv-head-minor).
CACHE_AXES = {"k": ("cache_rows", None, "cache_length"),
              "v": ("cache_rows", "cache_length", None)}


def unstack_layers(params: dict, num_layers: int) -> dict:
  """Scanned params (one "layers" subtree stacked on a leading axis) in the layout of
  scan_layers=False (layer_0 ... layer_{L-1}); unscanned params pass unchanged."""
  if "layers" not in params:
    return params
  out = {k: v for k, v in params.items() if k != "layers"}
  for i in range(num_layers):
    out[f"layer_{i}"] = jax.tree.map(lambda a, i=i: a[i], params["layers"])
  return out


def boxed_params(model: Transformer, rng) -> dict:
  """Initialised params, still boxed with their logical axis names."""
  return model.init(rng, jnp.zeros((1, 8), jnp.int32))["params"]


def param_logical_specs(model: Transformer):
  """The parameter tree's logical PartitionSpecs (shapes only; nothing is allocated)."""
  return nn.get_partition_spec(jax.eval_shape(lambda r: boxed_params(model, r),
                                              jax.random.key(0)))
