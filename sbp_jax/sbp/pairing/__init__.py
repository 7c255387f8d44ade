"""SBP pairing internals: document shards, embedders, ScaNN search, pair selection, the
per-shard stages and their Beam pipeline (the `pair` job in sbp/pair.py drives them)."""
