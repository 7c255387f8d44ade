"""Logical axis -> mesh axis rules: the one place parallelism is decided.

Parameters and activations are annotated with logical names in sbp_jax/model;
these rules map the names onto the mesh axes ("data", "fsdp", "tensor"). The
default shards weights over "fsdp" (ZeRO-3 style) plus Megatron-style tensor
parallelism for heads and the MLP; configs may override any rule.
"""

from __future__ import annotations

from typing import Sequence

MESH_AXES = ("data", "fsdp", "tensor")

# (logical name, mesh axis or axes or None). First match wins, as in flax.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # Parameters.
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("norm", None),
    ("layers", None),
    # Activations.
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_mlp", "tensor"),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_vocab", "tensor"),
    # KV cache for decoding; a row is one sequence's kv head (sequence-major), so its
    # shards are whole sequences and, with one sequence per batch shard, kv heads.
    ("cache_rows", ("data", "fsdp", "tensor")),
    ("cache_length", None),
)


def make_rules(overrides: Sequence[Sequence] | None = None):
  """Default rules with config overrides placed first (so they win)."""
  rules = [tuple(r) for r in (overrides or ())]
  for r in rules:
    if len(r) != 2:
      raise ValueError(f"mesh.rules entry {r!r} must be (logical_name, mesh_axes).")
    axes = r[1] if isinstance(r[1], (tuple, list)) else (r[1],)
    bad = [a for a in axes if a is not None and a not in MESH_AXES]
    if bad:
      raise ValueError(f"mesh.rules entry {r!r} names unknown mesh axes {bad}; use {MESH_AXES}.")
  rules = [(name, tuple(a) if isinstance(a, list) else a) for name, a in rules]
  return tuple(rules) + DEFAULT_RULES
