"""Sampling with a KV cache, and budget forcing on top of it."""
