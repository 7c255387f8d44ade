"""sbp_jax: Synthetic Bootstrapped Pretraining, EntiGraph and budget forcing in JAX."""
