"""Model hyperparameters as a frozen dataclass, built from an ml_collections config."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

# "splash" applies to training (no KV cache); decoding with a cache uses einsum.
ATTENTION_IMPLS = ("einsum", "dot_product", "splash")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A Llama-3-style decoder with optional QK-norm.

  `head_dim` defaults to d_model // num_heads. `dtype` is the compute dtype;
  parameters are stored in `param_dtype` (float32 by convention).
  """

  vocab_size: int = 49152
  num_layers: int = 26
  d_model: int = 3072
  d_ffn: int = 8064
  num_heads: int = 24
  num_kv_heads: int = 8
  head_dim: int | None = None
  rope_theta: float = 5e5
  norm_eps: float = 1e-5
  qk_norm: bool = True
  qkv_bias: bool = False
  tie_embeddings: bool = False
  max_seq_len: int = 4096
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  attention: str = "einsum"
  remat_policy: str = "full"
  scan_layers: bool = True

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"model.num_heads={self.num_heads} must be a multiple of "
          f"model.num_kv_heads={self.num_kv_heads} (grouped-query attention).")
    if self.head_dim is None and self.d_model % self.num_heads:
      raise ValueError(
          f"model.d_model={self.d_model} is not divisible by model.num_heads="
          f"{self.num_heads}; set model.head_dim explicitly.")
    if self.attention not in ATTENTION_IMPLS:
      raise ValueError(f"model.attention={self.attention!r}; choose one of {ATTENTION_IMPLS}.")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"model.remat_policy={self.remat_policy!r}; choose one of {REMAT_POLICIES}.")

  @property
  def resolved_head_dim(self) -> int:
    return self.head_dim or self.d_model // self.num_heads

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
    """Builds from a ConfigDict / dict, rejecting unknown keys with their name."""
    d = dict(d.items()) if hasattr(d, "items") else dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"Unknown model config field(s) {unknown}; known fields: {sorted(known)}.")
    return cls(**d)
