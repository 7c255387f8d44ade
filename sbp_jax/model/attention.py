"""Splash attention (a Pallas TPU kernel) for training on long packed sequences.

`model.attention="splash"` routes the training forward (no KV cache) here:
causal, grouped-query, and segment ids so packed documents do not see each
other, the same function as the einsum path in layers.py without ever forming
the [heads, length, length] score tensor. Decoding with a cache keeps the dense
path whatever `model.attention` says.

On TPU it runs the compiled kernel; on any other backend (CPU tests) the same
kernel in Pallas interpret mode. The choice is made when lowering
(`jax.lax.platform_dependent`), so an AOT compile for a TPU topology from a CPU
host gets the real kernel. Under a mesh the kernel runs per shard
(`jax.shard_map`): batch and heads split as the logical rules say, length whole.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash

Array = jax.Array

# Tiles of 512 are what large-model JAX trainers use on v5p; shorter sequences
# take one tile. Lane width makes 128 the smallest legal size (lengths are padded to it).
_BLOCK = 512
_MIN_BLOCK = 128


def _block_sizes(length: int) -> splash.BlockSizes:
  b = min(_BLOCK, length)
  return splash.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                           block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)


def _kernel(heads: int, length: int, interpret: bool):
  """A causal splash kernel for [heads, length, head_dim] queries (kv heads may be fewer).

  Built while tracing, so its block-mask tables become constants of the traced
  program: evaluating them eagerly would run on the current mesh's devices,
  which an AOT compile for a TPU topology cannot execute. The numpy mask
  processing is cached inside splash itself.
  """
  mask = splash.MultiHeadMask([splash.CausalMask((length, length))] * heads)
  return splash.make_splash_mha(mask, block_sizes=_block_sizes(length), head_shards=1,
                                q_seq_shards=1, interpret=interpret)


def _local(q: Array, k: Array, v: Array, segment_ids: Array) -> Array:
  """Splash over one shard: q [b, h, t, d], k/v [b, kvh, t, d], segment_ids [b, t]."""
  _, h, t, _ = q.shape

  def run(interpret, q, k, v, seg):
    kernel = _kernel(h, t, interpret)
    one = lambda q, k, v, s: kernel(q, k, v, segment_ids=splash.SegmentIds(q=s, kv=s))
    return jax.vmap(one)(q, k, v, seg)

  return jax.lax.platform_dependent(q, k, v, segment_ids,
                                    tpu=functools.partial(run, False),
                                    default=functools.partial(run, True))


def _divides(shape, spec, mesh) -> bool:
  for size, axes in zip(shape, spec):
    axes = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
    if size % math.prod(mesh.shape[a] for a in axes):
      return False
  return True


def splash_attention(q: Array, k: Array, v: Array, segment_ids: Array | None) -> Array:
  """Causal grouped-query attention within segments.

  q: [b, t, heads, d]; k, v: [b, t, kv_heads, d]; segment_ids: [b, t] or None
  (one sequence per row). Returns [b, t, heads, d] like layers.dot_product_attention.
  """
  b, t, h, d = q.shape
  if segment_ids is None:
    segment_ids = jnp.ones((b, t), jnp.int32)
  # Pad the length to whole tiles; the pad is its own segment (-1), so no real
  # token attends to it, and it is sliced off below.
  pad = -t % _MIN_BLOCK
  if pad:
    q, k, v = (jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) for a in (q, k, v))
    segment_ids = jnp.pad(segment_ids, ((0, 0), (0, pad)), constant_values=-1)
  # The kernel does not scale the logits; it wants heads before length.
  q = jnp.swapaxes(q * (d ** -0.5), 1, 2).astype(k.dtype)
  k, v = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)
  segment_ids = segment_ids.astype(jnp.int32)
  mesh = jax.sharding.get_abstract_mesh()
  specs = None
  if not mesh.empty:
    heads = nn.logical_to_mesh_axes(("activation_batch", "activation_heads", None, None))
    kv_heads = nn.logical_to_mesh_axes(("activation_batch", "activation_kv_heads", None, None))
    seg = nn.logical_to_mesh_axes(("activation_batch", None))
    specs = (heads, kv_heads, kv_heads, seg)
    args = (q, k, v, segment_ids)
    if not all(_divides(a.shape, sp, mesh) for a, sp in zip(args, specs)):
      specs = None  # e.g. the one-row batch of a shape-only init: run it whole
  if specs is None:
    out = _local(q, k, v, segment_ids)
  else:
    out = jax.shard_map(_local, mesh=mesh, in_specs=specs, out_specs=specs[0],
                        check_vma=False)(q, k, v, segment_ids)
  return jnp.swapaxes(out, 1, 2)[:, :t]
