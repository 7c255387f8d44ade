"""A resumable batch iterator over an in-memory token stream.

Used for tests and tiny CPU runs. Each global batch is a deterministic function
of (seed, batch index): rows are windows at random offsets into the stream.
Host h of H takes rows [h*B/H, (h+1)*B/H), so results do not depend on how
many hosts read.
"""

from __future__ import annotations

import numpy as np


def byte_tokens(text: str) -> np.ndarray:
  """UTF-8 bytes as token ids 0..255 (a tokenizer-free stream for tests)."""
  return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)


class TokenWindowIterator:

  def __init__(self, tokens: np.ndarray, seq_len: int, global_batch: int, seed: int = 0,
               process_index: int = 0, process_count: int = 1):
    tokens = np.asarray(tokens, dtype=np.int32)
    if tokens.ndim != 1 or len(tokens) < seq_len + 2:
      raise ValueError(f"Token stream of length {len(tokens)} is shorter than one window "
                       f"(data.seq_len + 1 = {seq_len + 1}); give more text or a shorter seq_len.")
    if global_batch % process_count:
      raise ValueError(f"Global batch {global_batch} is not divisible by {process_count} hosts.")
    self.tokens, self.seq_len, self.global_batch, self.seed = tokens, seq_len, global_batch, seed
    local = global_batch // process_count
    self._rows = slice(process_index * local, (process_index + 1) * local)
    self.index = 0

  def get_state(self) -> dict:
    return {"index": self.index}

  def set_state(self, state: dict) -> None:
    self.index = int(state["index"])

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, self.index])
    starts = rng.integers(0, len(self.tokens) - self.seq_len - 1, size=self.global_batch)
    starts = starts[self._rows]
    self.index += 1
    win = self.tokens[starts[:, None] + np.arange(self.seq_len + 1)]
    b = len(starts)
    return {
        "inputs": win[:, :-1],
        "targets": win[:, 1:],
        "weights": np.ones((b, self.seq_len), np.float32),
        "segment_ids": np.ones((b, self.seq_len), np.int32),
        "positions": np.broadcast_to(np.arange(self.seq_len, dtype=np.int32),
                                     (b, self.seq_len)).copy(),
    }
