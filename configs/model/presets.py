"""Model presets. `tiny` is for CPU tests and demos; 3b and 6b are thesis Table B.9."""

import ml_collections

PRESETS = {
    "tiny": dict(vocab_size=512, num_layers=2, d_model=64, d_ffn=192, num_heads=4,
                 num_kv_heads=2, max_seq_len=512),
    "100m": dict(vocab_size=49152, num_layers=12, d_model=640, d_ffn=1728, num_heads=10,
                 num_kv_heads=5, max_seq_len=2048),
    "3b": dict(vocab_size=49152, num_layers=26, d_model=3072, d_ffn=8064, num_heads=24,
               num_kv_heads=8, max_seq_len=8192),
    "6b": dict(vocab_size=49152, num_layers=32, d_model=4096, d_ffn=13056, num_heads=32,
               num_kv_heads=8, max_seq_len=8192),
}

DEFAULTS = dict(head_dim=None, rope_theta=5e5, norm_eps=1e-5, qk_norm=True, qkv_bias=False,
                tie_embeddings=False, dtype="bfloat16", param_dtype="float32",
                attention="einsum", remat_policy="full", scan_layers=True)


def get(name: str, **overrides) -> ml_collections.ConfigDict:
  if name not in PRESETS:
    raise ValueError(f"Unknown model preset {name!r}; choose one of {sorted(PRESETS)}.")
  d = {**DEFAULTS, **PRESETS[name], **overrides}
  return ml_collections.ConfigDict(d)
