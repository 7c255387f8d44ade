"""Analytic parameter and FLOP counts (no allocation)."""

from __future__ import annotations

from sbp_jax.model.config import ModelConfig


def count_params(cfg: ModelConfig) -> int:
  """Exact number of parameters the Transformer initialises."""
  d, hd = cfg.d_model, cfg.resolved_head_dim
  q, kv = cfg.num_heads * hd, cfg.num_kv_heads * hd
  attn = d * q + 2 * d * kv + q * d
  if cfg.qkv_bias:
    attn += q + 2 * kv
  if cfg.qk_norm:
    attn += 2 * hd
  mlp = 3 * d * cfg.d_ffn
  block = attn + mlp + 2 * d  # two RMSNorm scales
  embed = cfg.vocab_size * d
  output = 0 if cfg.tie_embeddings else d * cfg.vocab_size
  return embed + cfg.num_layers * block + d + output


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token (forward + backward), PaLM appendix B convention.

  6 x (matmul parameters, i.e. everything but the embedding lookup) plus
  12 x layers x heads x head_dim x seq_len for the attention score and value
  products (not discounted for causality).
  """
  matmul_params = count_params(cfg) - cfg.vocab_size * cfg.d_model
  if cfg.tie_embeddings:  # the tied table is still used as the output matmul
    matmul_params += cfg.vocab_size * cfg.d_model
  attention = 12 * cfg.num_layers * cfg.num_heads * cfg.resolved_head_dim * seq_len
  return 6.0 * matmul_params + attention
