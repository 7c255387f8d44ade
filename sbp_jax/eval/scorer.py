"""Batched log-likelihood scoring on the (sharded) model.

A request is a token sequence whose last `n_scored` tokens are scored given
everything before them. Requests are grouped into length buckets (powers of
two, capped at max_len), right-padded, and run `batch_size` rows at a time, so
each bucket compiles one function. A request's bucket depends only on its own
length, attention is causal and padding sits to the right, so its score does
not depend on which other requests share its batch or in what order they came.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from sbp_jax.model import ModelConfig, Transformer
from sbp_jax.parallel import (batch_sharding, batch_shards, bucket, make_mesh, make_rules, mesh_context,
                              place_params, replicated, round_up)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Request:
  tokens: tuple[int, ...]  # context then continuation
  n_scored: int            # trailing tokens whose log-likelihood is summed

  def __post_init__(self):
    if not 1 <= self.n_scored < len(self.tokens):
      raise ValueError(f"a request needs 1 <= n_scored < len(tokens); got n_scored="
                       f"{self.n_scored} for {len(self.tokens)} tokens (is the context empty?).")


@dataclasses.dataclass(frozen=True)
class Score:
  logprob: float  # sum of log p(token | prefix) over the scored tokens
  n_tokens: int
  greedy: bool    # every scored token is the model's argmax


def _score_rows(model: Transformer, params, inputs, targets, mask):
  logits = model.apply({"params": params}, inputs)["logits"].astype(jnp.float32)
  lse = jax.nn.logsumexp(logits, axis=-1)
  tgt = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  logprob = jnp.sum(jnp.where(mask, tgt - lse, 0.0), axis=-1)
  hit = jnp.argmax(logits, axis=-1) == targets
  greedy = jnp.all(hit | ~mask, axis=-1)
  return logprob, greedy


@functools.lru_cache(maxsize=16)
def _jitted(cfg: ModelConfig, mesh: Mesh, rules: tuple):
  """One jitted scorer per (model config, mesh, rules): Scorers of the same model
  share compilations (jax.jit keeps one executable per bucket shape). The rules
  are part of the key because tracing reads them (logical constraints)."""
  del rules
  model = Transformer(cfg)
  return jax.jit(lambda p, i, t, m: _score_rows(model, p, i, t, m),
                 out_shardings=replicated(mesh))


class Scorer:
  """Scores Requests with one model and its params.

  mesh/rules: as in training (default: one device). Rows are sharded over the
  mesh's batch axes; batch_size is rounded up to a multiple of their size.
  max_len: longest model input (default cfg.max_seq_len); longer requests keep
  their last max_len + 1 tokens.
  """

  def __init__(self, cfg: ModelConfig, params, mesh: Mesh | None = None, rules=None,
               batch_size: int = 16, max_len: int | None = None, min_bucket: int = 16,
               pad_id: int = 0):
    self.cfg = cfg
    self.model = Transformer(cfg)
    self.mesh = mesh if mesh is not None else make_mesh((1, 1, 1), devices=jax.devices()[:1])
    self.rules = rules if rules is not None else make_rules()
    self.batch_size = round_up(max(1, batch_size), batch_shards(self.mesh, self.rules))
    self.max_len = int(max_len or cfg.max_seq_len)
    self.min_bucket = min(min_bucket, self.max_len)
    if not 0 <= pad_id < cfg.vocab_size:
      raise ValueError(f"pad_id={pad_id} is outside the vocabulary [0, {cfg.vocab_size}).")
    self.pad_id = pad_id
    self.params = place_params(params, cfg, self.mesh, self.rules)
    self._rows = batch_sharding(self.mesh, self.rules, 2)
    self._fn = _jitted(cfg, self.mesh, tuple(self.rules))
    self.buckets_compiled: set[tuple[int, int]] = set()
    self.stats = dict(truncated=0, scored_tokens=0, input_tokens=0, padded_tokens=0,
                      seconds=0.0)

  def bucket_of(self, n_inputs: int) -> int:
    return min(bucket(n_inputs, self.min_bucket), self.max_len)

  def _put(self, x: np.ndarray):
    # Every host holds the whole batch; each device takes its rows.
    return jax.make_array_from_callback(x.shape, self._rows, lambda idx: x[idx])

  def score(self, requests: Sequence[Request]) -> list[Score]:
    vocab = self.cfg.vocab_size
    prepared = []
    for i, r in enumerate(requests):
      toks = r.tokens
      if r.n_scored > self.max_len:
        raise ValueError(f"request {i} scores {r.n_scored} tokens, more than max_len="
                         f"{self.max_len}; split it into windows (see rolling_requests).")
      if len(toks) - 1 > self.max_len:
        toks = toks[-(self.max_len + 1):]  # drop the oldest context
        self.stats["truncated"] += 1
      lo, hi = min(toks), max(toks)
      if lo < 0 or hi >= vocab:
        raise ValueError(f"request {i} holds token id {hi if hi >= vocab else lo}, outside the "
                         f"model's vocabulary [0, {vocab}); is the tokenizer the model's?")
      prepared.append((self.bucket_of(len(toks) - 1), i, toks, r.n_scored))

    out: list[Score | None] = [None] * len(requests)
    by_bucket: dict[int, list] = {}
    for p in prepared:
      by_bucket.setdefault(p[0], []).append(p)
    t0 = time.perf_counter()
    with mesh_context(self.mesh, self.rules):
      for length, items in sorted(by_bucket.items()):
        for s in range(0, len(items), self.batch_size):
          chunk = items[s:s + self.batch_size]
          inputs = np.full((self.batch_size, length), self.pad_id, np.int32)
          targets = np.full((self.batch_size, length), self.pad_id, np.int32)
          mask = np.zeros((self.batch_size, length), bool)
          for row, (_, _, toks, k) in enumerate(chunk):
            n = len(toks) - 1
            inputs[row, :n] = toks[:-1]
            targets[row, :n] = toks[1:]
            mask[row, n - k:n] = True
          self.buckets_compiled.add((self.batch_size, length))
          lp, greedy = jax.device_get(self._fn(self.params, self._put(inputs),
                                               self._put(targets), self._put(mask)))
          for row, (_, i, _, k) in enumerate(chunk):
            out[i] = Score(float(lp[row]), int(k), bool(greedy[row]))
          self.stats["scored_tokens"] += int(mask.sum())
          self.stats["input_tokens"] += sum(len(c[2]) - 1 for c in chunk)
          self.stats["padded_tokens"] += int(inputs.size)
    self.stats["seconds"] += time.perf_counter() - t0
    return out  # type: ignore[return-value]


def rolling_requests(tokens: Sequence[int], prefix: Sequence[int], max_len: int,
                     overlap: int) -> list[Request]:
  """Windows that together score every token of a document exactly once.

  With a prefix (e.g. [eos] as a document start) every token is scored; without
  one, the first token is context only. Each window after the first predicts
  max_len - overlap new tokens given the `overlap` tokens before them.
  """
  seq = list(prefix) + list(tokens)
  start = len(prefix) if prefix else 1
  if len(seq) <= start:
    return []
  if not 0 <= overlap < max_len:
    raise ValueError(f"rolling overlap={overlap} must be in [0, max_len={max_len}).")
  reqs = []
  first_end = min(len(seq), max_len + 1)
  reqs.append(Request(tuple(seq[:first_end]), first_end - start))
  pos = first_end
  step = max_len - overlap
  while pos < len(seq):
    end = min(len(seq), pos + step)
    ctx = max(0, pos - max(overlap, 1))
    reqs.append(Request(tuple(seq[ctx:end]), end - pos))
    pos = end
  return reqs
