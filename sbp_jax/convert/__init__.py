"""Import of public checkpoints into sbp_jax params (safetensors; GGUF to follow)."""
