"""Data: tokenizers, cleaning, seqio tasks and mixtures, and batch iterators.

Every iterator the trainer consumes yields host-local numpy batches with the
keys in sbp_jax.train.step.BATCH_KEYS and exposes `get_state()` / `set_state()`
(JSON-serialisable) so the checkpoint can record the exact data position.
"""
