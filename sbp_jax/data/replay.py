"""Replay: mix a generic corpus into continued pretraining, one coin flip per batch.

Thesis A.2: for each training batch a biased coin decides (probability `rate`)
whether the whole batch comes from the replay corpus instead of the target
corpus. The coin for batch i is a pure function of (seed, i), so every host
flips the same coin for the same global batch and a resumed run continues the
exact sequence of choices.
"""

from __future__ import annotations

import numpy as np


def replay_coin(seed: int, index: int, rate: float) -> bool:
  """True when batch `index` is drawn from the replay corpus."""
  return bool(np.random.default_rng([seed, index, 0x5E9]).random() < rate)


class ReplayIterator:
  """Yields batches from `main`, or from `replay` with probability `rate`.

  Both children must be resumable iterators (get_state / set_state); only the
  child that is drawn advances, so neither skips data.
  """

  def __init__(self, main, replay, rate: float, seed: int = 0):
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"data.rate={rate} must be in [0, 1): the fraction of batches taken "
                       "from the replay corpus.")
    self.main, self.replay, self.rate, self.seed = main, replay, float(rate), seed
    self.index = 0
    self.num_replay = 0

  def get_state(self) -> dict:
    return {"index": self.index, "num_replay": self.num_replay,
            "main": self.main.get_state(), "replay": self.replay.get_state()}

  def set_state(self, state: dict) -> None:
    self.index = int(state["index"])
    self.num_replay = int(state.get("num_replay", 0))
    self.main.set_state(state["main"])
    self.replay.set_state(state["replay"])

  # Iterator checkpoints (sbp_jax.data.pipeline): each child that has them
  # saves and restores its own, under prefix-main / prefix-replay.
  @property
  def checkpoint_iterator(self) -> bool:
    return any(getattr(c, "checkpoint_iterator", False) for c in (self.main, self.replay))

  def save_iterator(self, prefix: str) -> bool:
    return any([c.save_iterator(f"{prefix}-{name}") for name, c in self._checkpointable()])

  def restore_iterator(self, prefix: str | None) -> bool:
    return all([c.restore_iterator(prefix and f"{prefix}-{name}")
                for name, c in self._checkpointable()])

  def _checkpointable(self):
    return [(name, c) for name, c in (("main", self.main), ("replay", self.replay))
            if getattr(c, "checkpoint_iterator", False)]

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    use_replay = replay_coin(self.seed, self.index, self.rate)
    batch = next(self.replay if use_replay else self.main)
    self.index += 1
    self.num_replay += int(use_replay)
    return batch


def make_replay_iterator(data_cfg, split: str, seq_len: int, global_batch: int, seed: int,
                         make_child):
  """`data = dict(kind="replay", rate=0.1, main=<data cfg>, replay=<data cfg>)`.

  Evaluation reads only `main`: held-out loss is measured on the target corpus.
  """
  for key in ("main", "replay"):
    if data_cfg.get(key) is None:
      raise ValueError(f"data.kind='replay' needs data.{key} (a data config of its own, e.g. "
                       "kind='seqio'); see configs/entigraph_cpt.py.")
  main = make_child(data_cfg.main, split, seq_len, global_batch, seed)
  if split != "train":
    return main
  # A different seed for the replay stream, so its windows do not mirror main's.
  replay = make_child(data_cfg.replay, split, seq_len, global_batch, seed + 7919)
  return ReplayIterator(main, replay, float(data_cfg.get("rate", 0.1)), seed)
