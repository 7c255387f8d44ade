"""Batched sampling with a functional KV cache: one prefill, then a jitted decode loop.

Prompts are right-padded to a length bucket and prefilled together; each row's
`cache_index` is its own length, so the padding slots it later overwrites are
never attended to (attention is causal by slot). Prompts that start alike (few-shot
examples) or repeat (k samples of one question) are prefilled once: the shared
leading tokens in one row, then each distinct remainder after them, and the cache
rows are copied to the rows that repeat them (`share_plan`). The decode loop is a
`lax.while_loop` compiled once per (batch, cache bucket, generation bucket, filter
flags); each step runs the model on one token per row. Attention reads every slot
of the cache, so the cache holds only the power-of-two bucket of slots above the
furthest row and grows to the next bucket between runs of the loop; rows still
going move to a smaller batch once most are done. Stops are token sequences (a stop
id is one of length 1), matched inside the loop against each row's last generated
tokens, so a delimiter of several tokens ends a row only when all of them are
generated. Stop strings (text) are checked on the host between runs of the loop.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from typing import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sbp_jax.generate.text_codec import eos_ids_of, pad_id_of
from sbp_jax.model import CACHE_AXES, ModelConfig, Transformer, init_cache, unstack_layers
from sbp_jax.parallel import (batch_shards, bucket, make_mesh, make_rules, mesh_context, place_params,
                              round_up)

MAX_STOPS = 16      # stop ids and stop sequences together
MAX_STOP_LEN = 8    # tokens in the longest stop sequence
MAX_EXTEND_IDS = 16
_NEG = -jnp.inf
SHARE_MULTIPLE = 64  # a shared prefix is used in multiples of this many tokens


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  temperature: float = 1.0   # 0 = greedy
  top_k: int = 0             # 0 = off
  top_p: float = 1.0         # 1 = off
  max_new_tokens: int = 256
  min_new_tokens: int = 0    # stop ids are masked until this many tokens exist
  stop_ids: tuple[int, ...] | None = None  # None: the tokenizer's end-of-sequence ids
  stop_sequences: tuple[tuple[int, ...], ...] = ()  # multi-token stops, e.g. a delimiter
  stop_strings: tuple[str, ...] = ()
  logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
  # Suppress a stop up to `extensions` times per row: the stop (all its tokens, for a
  # stop sequence) is replaced by `extend_ids` (e.g. "Wait"), which are forced, and
  # decoding goes on (s1's budget forcing). Done inside the decode loop, so extending
  # costs no extra prefill.
  extend_ids: tuple[int, ...] = ()
  extensions: int = 0

  def __post_init__(self):
    if self.temperature < 0:
      raise ValueError(f"temperature={self.temperature} must be >= 0 (0 is greedy).")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"top_p={self.top_p} must be in (0, 1].")
    if self.top_k < 0 or self.max_new_tokens < 0 or self.min_new_tokens < 0:
      raise ValueError("top_k, max_new_tokens and min_new_tokens must be >= 0.")
    if self.extensions < 0 or (self.extensions and not self.extend_ids):
      raise ValueError(f"extensions={self.extensions} needs extend_ids (the tokens that "
                       "replace a suppressed stop) and must be >= 0.")
    bad = [q for q in self.stop_sequences if not 0 < len(q) <= MAX_STOP_LEN]
    if bad:
      raise ValueError(f"stop sequence {bad[0]!r} must have 1 to {MAX_STOP_LEN} tokens.")
    if len(self.extend_ids) > MAX_EXTEND_IDS:
      raise ValueError(f"extend_ids has {len(self.extend_ids)} tokens; at most "
                       f"{MAX_EXTEND_IDS} are supported.")


@dataclasses.dataclass
class Completion:
  tokens: list[int]        # generated ids, with the stop's tokens when one ended the row
  text: str                # decoded, without the stop tokens / stop string
  finish_reason: str       # "stop_token" (a stop id or sequence) | "stop_string" | "length"
  logits: np.ndarray | None = None  # [len(tokens), vocab] when record_logits
  extended_at: list[int] = dataclasses.field(default_factory=list)  # where extend_ids begin
  stop_len: int = 0        # trailing tokens that are the stop (finish_reason "stop_token")


def _order_keys(x: jax.Array) -> jax.Array:
  """uint32 keys that order like the float32 values x (-inf lowest)."""
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(1 << 31))


def top_k_filter(x: jax.Array, top_k: jax.Array) -> jax.Array:
  """Masks (to -inf) all but the top_k largest of each row of x [b, V] (ties kept).

  The k-th value is found by bisection over the values' 32-bit keys (32 passes
  over the vocabulary): on CPU, XLA's sort cost more than the model.
  """
  keys = _order_keys(x)
  k = jnp.clip(jnp.asarray(top_k, jnp.int32), 1, x.shape[-1])
  lo = jnp.zeros(keys.shape[:1] + (1,), jnp.uint32)
  hi = jnp.max(keys, axis=-1, keepdims=True)

  def step(_, bounds):  # the smallest key c with fewer than k keys above it
    lo, hi = bounds
    mid = lo + (hi - lo) // 2
    below = jnp.sum(keys > mid, axis=-1, keepdims=True) < k
    return jnp.where(below, lo, mid + 1), jnp.where(below, mid, hi)

  return jnp.where(keys >= jax.lax.fori_loop(0, 32, step, (lo, hi))[1], x, _NEG)


def first_argmax(x: jax.Array) -> jax.Array:
  """jnp.argmax over the last axis (the first maximum wins), as two plain reductions:
  XLA's CPU argmax (a two-operand reduce) took 1.2 ms for [64, 4096], this 0.15."""
  iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
  first = jnp.min(jnp.where(x == jnp.max(x, axis=-1, keepdims=True), iota, x.shape[-1]), axis=-1)
  return jnp.minimum(first, x.shape[-1] - 1)


_CDF_BLOCK = 64


def _draw(probs: jax.Array, keys: jax.Array) -> jax.Array:
  """One token per row from unnormalised probabilities [b, V]: the cumulative
  distribution inverted at one uniform number (a Gumbel draw would need V of them).

  The CDF is two-level, so that no long cumsum runs (XLA's CPU cumsum is a slow
  reduce-window: 0.9 ms for [64, 4096], this 0.07): a cumulative sum over the
  totals of blocks of 64 tokens picks the first block whose running total reaches the
  target, then one within that block picks the token, each a matmul with a
  triangular matrix. A zero-probability token is never picked.
  """
  b, vocab = probs.shape
  nb = -(-vocab // _CDF_BLOCK)
  p3 = jnp.pad(probs, ((0, 0), (0, nb * _CDF_BLOCK - vocab))).reshape(b, nb, _CDF_BLOCK)
  tri = lambda n: jnp.triu(jnp.ones((n, n), probs.dtype))                 # inclusive cumsum
  outer = jnp.sum(p3, axis=-1) @ tri(nb)                                   # [b, nb]
  u = 1 - jax.vmap(jax.random.uniform)(keys)  # (0, 1]: a zero-probability token is never hit
  target = u * outer[:, -1]
  j = jnp.minimum(jnp.sum(outer < target[:, None], axis=-1), nb - 1)
  before = jnp.where(j > 0, jnp.take_along_axis(outer, jnp.maximum(j - 1, 0)[:, None], 1)[:, 0],
                     0)
  block = jnp.take_along_axis(p3, j[:, None, None], axis=1)[:, 0]         # [b, B]
  i = jnp.sum(block @ tri(_CDF_BLOCK) < (target - before)[:, None], axis=-1)
  # The block's own sum can round below its total in `outer`, leaving i one past its
  # last token: take its last token with probability instead (never a zero one).
  last = jnp.max(jnp.where(block > 0, jnp.arange(_CDF_BLOCK), 0), axis=-1)
  return (j * _CDF_BLOCK + jnp.minimum(i, last)).astype(jnp.int32)


def _draw_nucleus(x: jax.Array, keys: jax.Array, top_p) -> jax.Array:
  """One token per row from the top-p nucleus of softmax(x), without sorting.

  The nucleus is the smallest set of most likely tokens whose mass reaches top_p
  (ties at its edge all in). Rejection: draw from the tokens above a pivot; a token
  is in the nucleus iff the mass strictly above it is < top_p; if the draw is not,
  neither is anything at or below it, so it becomes the pivot and the row draws
  again (round r with key fold_in(key, r)). An accepted draw is distributed as the
  nucleus renormalised, and most rows accept at once (a draw falls outside with
  probability about 1 - top_p), so a step costs a few passes over the vocabulary.
  """
  probs = jax.nn.softmax(x, axis=-1)
  order = _order_keys(x)
  b = x.shape[0]

  def body(c):
    r, pivot, tok, ok = c
    cand = _draw(jnp.where(order > pivot[:, None], probs, 0),
                 jax.vmap(jax.random.fold_in)(keys, jnp.full((b,), r)))
    at = jnp.take_along_axis(order, cand[:, None], axis=1)
    inside = jnp.sum(jnp.where(order > at, probs, 0), axis=-1) < top_p
    return (r + 1, jnp.where(ok | inside, pivot, at[:, 0]), jnp.where(ok, tok, cand),
            ok | inside)

  start = (jnp.int32(0), jnp.zeros((b,), jnp.uint32), jnp.zeros((b,), jnp.int32),
           jnp.zeros((b,), bool))
  # Rounds are capped so that non-finite logits (no row ever accepts) cannot hang a step.
  return jax.lax.while_loop(lambda c: ~jnp.all(c[3]) & (c[0] < 64), body, start)[2]


def sample_tokens(logits: jax.Array, keys: jax.Array, temperature, top_k, top_p,
                  use_top_k: bool = False, use_top_p: bool = False,
                  greedy_only: bool = False) -> jax.Array:
  """One token per row. temperature 0 is argmax; keys: [b] typed PRNG keys.
  Top-k, then the top-p nucleus of what is left; greedy_only: temperature is
  known to be 0, so nothing is drawn."""
  greedy = first_argmax(logits)
  if greedy_only:
    return greedy
  x = logits / jnp.maximum(temperature, 1e-6)
  if use_top_k:
    x = top_k_filter(x, top_k)
  sampled = (_draw_nucleus(x, keys, top_p) if use_top_p
             else _draw(jax.nn.softmax(x, axis=-1), keys))
  return jnp.where(temperature <= 0, greedy, sampled)


def _find_stop(text: str, stops: Sequence[str]) -> int:
  hits = [text.find(s) for s in stops if s and s in text]
  return min(hits) if hits else -1


def _stop_prefix(tokenizer, toks: list[int], stops: Sequence[str]) -> int:
  """The fewest leading tokens whose text contains a stop string (toks' text does).

  Binary search: a prefix that contains a stop string stays containing it as
  tokens are appended, so O(log n) decodes instead of one per prefix.
  """
  hit = lambda k: _find_stop(tokenizer.decode(toks[:k]), stops) >= 0
  return bisect.bisect_left(range(len(toks) + 1), True, lo=1, key=hit)


@flax.struct.dataclass
class DecodeControls:
  """What the decode loop obeys; fixed for one call (static flags pick the compilation)."""
  max_new: jax.Array      # [b] token limit of each row
  min_new: jax.Array      # [b] stops cannot complete until a row has this many tokens
  stops: jax.Array        # [MAX_STOPS, MAX_STOP_LEN] right-aligned, -1 before (or unused)
  bias: jax.Array         # [vocab] added to the logits
  temperature: jax.Array
  top_k: jax.Array
  top_p: jax.Array
  pad_id: jax.Array       # written after a row is done
  ext_ids: jax.Array      # [MAX_EXTEND_IDS] tokens that replace a suppressed stop
  ext_len: jax.Array      # how many of ext_ids are used
  max_ext: jax.Array      # suppressions allowed per row
  use_top_k: bool = flax.struct.field(pytree_node=False, default=False)
  use_top_p: bool = flax.struct.field(pytree_node=False, default=False)
  greedy_only: bool = flax.struct.field(pytree_node=False, default=False)


@flax.struct.dataclass
class DecodeState:
  """The decode loop's carry: KV cache, the next logits, and what has been generated."""
  cache: list             # per layer {"k", "v"} (see init_cache)
  logits: jax.Array       # [b, vocab] for the next token
  index: jax.Array        # [b] cache slot of the next token
  n: jax.Array            # [b] tokens generated (kept: a suppressed stop is taken back)
  drawn: jax.Array        # [b] tokens sampled so far (the random stream's position)
  done: jax.Array         # [b]
  out: jax.Array          # [b, g] generated ids (pad after the end)
  keys: jax.Array         # [b] typed PRNG keys, one stream per row
  ext_q: jax.Array        # [b] position in ext_ids of the next forced token (ext_len: none)
  ext_n: jax.Array        # [b] extensions used
  ext_at: jax.Array       # [b, g] True where an extension begins
  rec: jax.Array | None   # [b, g, vocab] logits of each generated token (record_logits)


@dataclasses.dataclass
class Plan:
  """A generate call laid out for the device: padded host arrays and the loop's settings."""
  n: int                  # real rows (the rest pad the batch to the mesh)
  tokens: np.ndarray      # [rows, p_len] right-padded prompts
  lengths: np.ndarray     # [rows]
  g_len: int              # generation bucket
  controls: DecodeControls  # of host arrays
  stops: tuple[tuple[int, ...], ...]
  stop_strings: tuple[str, ...]
  seed: int
  record_logits: bool
  shared: int = 0                 # leading tokens all rows share, prefilled once
  source: np.ndarray | None = None  # [rows] the first row with the same prompt


def share_plan(prompts: Sequence[Sequence[int]], rows: int) -> tuple[int, np.ndarray]:
  """(shared, source) for a batch of prompts padded to `rows` rows.

  shared: the leading tokens that every prompt holds, rounded down to a multiple of
  SHARE_MULTIPLE (so few programs compile) and leaving each prompt at least one token
  of its own (whose logits start decoding); 0 when fewer than SHARE_MULTIPLE.
  source: per row, the first row with the same prompt (padding rows copy row 0).
  Pure host work; `Sampler.run` prefills the shared tokens once and each source row's
  remainder once."""
  first: dict[tuple[int, ...], int] = {}
  source = np.zeros((rows,), np.int32)
  for i, p in enumerate(prompts):
    source[i] = first.setdefault(tuple(p), i)
  p0, common = prompts[0], min(len(p) for p in prompts) - 1
  for p in prompts[1:]:
    common = next((j for j in range(common) if p[j] != p0[j]), common)
  shared = common // SHARE_MULTIPLE * SHARE_MULTIPLE if len(prompts) > 1 else 0
  return shared, source


@dataclasses.dataclass
class Decoded:
  """A finished decode, on the host."""
  out: np.ndarray         # [rows, g]
  n: np.ndarray           # [rows]
  ext_at: np.ndarray      # [rows, g]
  rec: np.ndarray | None


class Sampler:
  """Generates continuations of token prompts with one model and its params.

  mesh/rules: the training mesh and logical rules (default: one device);
  parameters are placed with the model's logical shardings, the KV cache with
  CACHE_AXES, prompts over the batch axes (rows are padded to fill them).
  Decoding runs the layers as a loop (scanned params are unstacked once, here),
  so each step updates every layer's cache buffers in place.
  `generate` is prepare (validate and pad, on the host) -> run (prefill and the
  decode loop, on the device) -> finish (detokenize and trim, on the host).
  """

  def __init__(self, cfg: ModelConfig, params, tokenizer=None, mesh: Mesh | None = None,
               rules=None, chunk: int = 32, min_bucket: int = 16, cache_dtype=None,
               shrink_batch: bool = True, share_prompts: bool = True):
    # A layer loop (see unstack_layers), and no remat: decoding keeps no activations
    # for a backward pass, and remat's barriers would only stop XLA fusing.
    self.cfg = dataclasses.replace(cfg, scan_layers=False, remat_policy="none")
    self.model = Transformer(self.cfg)
    self.tokenizer = tokenizer
    self.mesh = mesh if mesh is not None else make_mesh((1, 1, 1), devices=jax.devices()[:1])
    self.rules = rules if rules is not None else make_rules()
    self.chunk = chunk
    self.shrink_batch = shrink_batch  # move live rows to a smaller batch (see run)
    self.share_prompts = share_prompts  # prefill shared and repeated prompt tokens once
    self.min_bucket = min_bucket
    self.cache_dtype = cache_dtype
    self.batch_multiple = batch_shards(self.mesh, self.rules)
    self.last_timings: dict = {}
    self.params = place_params(unstack_layers(nn.meta.unbox(params), cfg.num_layers), self.cfg,
                               self.mesh, self.rules)
    self._prefill = jax.jit(self._prefill_fn, static_argnames=("cache_len",))
    self._decode = jax.jit(self._decode_fn, donate_argnames=("state",))
    self._grow = jax.jit(self._grow_fn, static_argnames=("window",))
    self._take = jax.jit(self._take_fn)
    self._extend = jax.jit(self._extend_fn)
    self._copy_rows = jax.jit(self._copy_rows_fn)

  # -- jitted pieces -----------------------------------------------------------------

  def _constrain_cache(self, cache):
    return [{name: nn.with_logical_constraint(buf, CACHE_AXES[name])
             for name, buf in layer.items()} for layer in cache]

  def _prefill_fn(self, params, tokens, lengths, cache_len: int):
    b = tokens.shape[0]
    cache = self._constrain_cache(init_cache(self.cfg, b, cache_len, self.cache_dtype))
    out = self.model.apply({"params": params}, tokens, cache=cache, logits_at=lengths - 1)
    return self._constrain_cache(out["cache"]), out["logits"][:, 0]

  def _extend_fn(self, params, cache, tokens, index, lengths):
    """The cache with each row's `lengths` tokens written after its first `index`
    slots, and the logits after each row's last one."""
    out = self.model.apply({"params": params}, tokens, cache=cache, cache_index=index,
                           logits_at=lengths - 1)
    return self._constrain_cache(out["cache"]), out["logits"][:, 0]

  def _cache_rows(self, cache, rows):
    """The cache's batch rows `rows` (each row is kv_heads rows of the buffers)."""
    kvh = self.cfg.num_kv_heads
    idx = (rows[:, None] * kvh + jnp.arange(kvh)[None, :]).reshape(-1)
    return self._constrain_cache([{name: buf[idx] for name, buf in layer.items()}
                                  for layer in cache])

  def _copy_rows_fn(self, cache, logits, rows):
    batch = lambda x: nn.with_logical_constraint(x, ("activation_batch", None))
    return self._cache_rows(cache, rows), batch(logits[rows])

  def _grow_fn(self, cache, window: int):
    """The cache with empty slots appended up to `window` slots."""
    grow = window - cache[0]["v"].shape[1]
    pad = {"k": ((0, 0), (0, 0), (0, grow)), "v": ((0, 0), (0, grow), (0, 0))}
    return self._constrain_cache([{name: jnp.pad(buf, pad[name]) for name, buf in layer.items()}
                                  for layer in cache])

  def _take_fn(self, state: DecodeState, ctl: DecodeControls, keep):
    """The state and per-row controls of the rows `keep` (a smaller batch)."""
    cache = self._cache_rows(state.cache, keep)
    rows = lambda x: nn.with_logical_constraint(x[keep],
                                                ("activation_batch",) + (None,) * (x.ndim - 1))
    fields = ("logits", "index", "n", "drawn", "done", "out", "ext_q", "ext_n", "ext_at", "rec")
    state = state.replace(cache=cache, keys=state.keys[keep],
                          **{f: None if getattr(state, f) is None else rows(getattr(state, f))
                             for f in fields})
    return state, ctl.replace(max_new=rows(ctl.max_new), min_new=rows(ctl.min_new))

  def _decode_fn(self, params, state: DecodeState, ctl: DecodeControls, limit) -> DecodeState:
    """Up to `limit` steps of the decode loop (fewer if every row is done)."""
    b, g = state.out.shape
    vocab = state.logits.shape[-1]
    rows = jnp.arange(b)
    length = jnp.sum(ctl.stops >= 0, axis=1)                       # [S] 0 = unused
    last = jnp.where(length > 0, ctl.stops[:, -1], vocab)         # [S] completing token

    def tail(out, n):
      """[b, MAX_STOP_LEN - 1] each row's last generated tokens (-2 before its first)."""
      pos = n[:, None] - (MAX_STOP_LEN - 1) + jnp.arange(MAX_STOP_LEN - 1)[None, :]
      got = jnp.take_along_axis(out, jnp.clip(pos, 0, g - 1), axis=1)
      return jnp.where(pos >= 0, got, -2)

    def cond(carry):
      step, st = carry
      return (step < limit) & ~jnp.all(st.done)

    def body(carry):
      step, st = carry
      prev = tail(st.out, st.n)
      # A stop is due when the row's last tokens are all but its final one; under the
      # minimum that final token is masked, so the stop cannot complete.
      pending = jnp.all((ctl.stops[None, :, :-1] < 0) |
                        (ctl.stops[None, :, :-1] == prev[:, None, :]), axis=-1)  # [b, S]
      ban = pending & (length > 0)[None, :] & (st.n < ctl.min_new)[:, None]
      logits = st.logits + ctl.bias[None, :]
      logits = logits.at[rows[:, None], jnp.where(ban, last[None, :], vocab)].set(
          _NEG, mode="drop")
      keys = jax.vmap(jax.random.fold_in)(st.keys, st.drawn)
      tok = sample_tokens(logits, keys, ctl.temperature, ctl.top_k, ctl.top_p, ctl.use_top_k,
                          ctl.use_top_p, ctl.greedy_only)
      active = ~st.done
      # Extensions: a queued extension token is forced; a completed stop with
      # extensions left is taken back (all its tokens) and replaced by the first
      # extension token, and the rest are queued.
      forcing = st.ext_q < ctl.ext_len
      tok = jnp.where(forcing, ctl.ext_ids[jnp.minimum(st.ext_q, MAX_EXTEND_IDS - 1)], tok)
      hit = pending & (length > 0)[None, :] & (tok[:, None] == last[None, :])   # [b, S]
      stopped = jnp.any(hit, axis=1)
      extend = active & ~forcing & stopped & (st.ext_n < ctl.max_ext)
      back = jnp.where(extend, jnp.max(jnp.where(hit, length[None, :], 1), axis=1) - 1, 0)
      tok = jnp.where(extend, ctl.ext_ids[0], tok)
      tok = jnp.where(active, tok, ctl.pad_id)
      at = st.n - back
      slot = jnp.where(active, at, g)  # out of range -> dropped
      n = at + active
      index = st.index - back
      res = self.model.apply({"params": params}, tok[:, None], cache=st.cache,
                             cache_index=index)
      new = st.replace(
          cache=self._constrain_cache(res["cache"]), logits=res["logits"][:, 0],
          index=index + active, n=n, drawn=st.drawn + active,
          done=st.done | (active & ((stopped & ~extend) | (n >= ctl.max_new))),
          out=st.out.at[rows, slot].set(tok, mode="drop"),
          ext_q=jnp.where(extend, 1, st.ext_q + (forcing & active)),
          ext_n=st.ext_n + extend,
          ext_at=st.ext_at.at[rows, slot].set(extend, mode="drop"),
          rec=None if st.rec is None else st.rec.at[rows, slot].set(st.logits, mode="drop"))
      return step + 1, new

    _, state = jax.lax.while_loop(cond, body, (jnp.int32(0), state))
    return state

  # -- host driver -------------------------------------------------------------------

  def generate(self, prompts: Sequence[Sequence[int]], sp: SamplingParams, seed: int = 0,
               max_new_tokens: Sequence[int] | None = None,
               min_new_tokens: Sequence[int] | None = None,
               record_logits: bool = False) -> list[Completion]:
    """Samples a continuation of each prompt (lists of ids).

    max_new_tokens / min_new_tokens: optional per-row overrides of `sp`'s.
    Row i draws from its own stream (seed, i), so results do not depend on how
    rows are padded to fill the mesh.
    """
    if len(prompts) == 0:
      return []
    plan = self.prepare(prompts, sp, seed, max_new_tokens, min_new_tokens, record_logits)
    return self.finish(plan, self.run(plan))

  def prepare(self, prompts: Sequence[Sequence[int]], sp: SamplingParams, seed: int = 0,
              max_new_tokens: Sequence[int] | None = None,
              min_new_tokens: Sequence[int] | None = None,
              record_logits: bool = False) -> Plan:
    """Validates a call and pads it into the bucketed, mesh-filling host arrays."""
    n = len(prompts)
    for i, p in enumerate(prompts):
      if len(p) == 0:
        raise ValueError(f"prompt {i} is empty; every prompt needs at least one token "
                         "(e.g. a beginning-of-sequence id).")
    max_new = np.asarray(max_new_tokens if max_new_tokens is not None
                         else [sp.max_new_tokens] * n, np.int32)
    min_new = np.asarray(min_new_tokens if min_new_tokens is not None
                         else [sp.min_new_tokens] * n, np.int32)
    if max_new.shape != (n,) or min_new.shape != (n,):
      raise ValueError(f"max_new_tokens / min_new_tokens need one entry per prompt ({n}).")
    stop_ids = sp.stop_ids
    if stop_ids is None:
      stop_ids = eos_ids_of(self.tokenizer) if self.tokenizer is not None else ()
    stops = tuple(dict.fromkeys([(int(i),) for i in stop_ids] +
                                [tuple(int(i) for i in q) for q in sp.stop_sequences]))
    if len(stops) > MAX_STOPS:
      raise ValueError(f"at most {MAX_STOPS} stop ids and stop sequences are supported, got "
                       f"{len(stops)}.")
    if sp.stop_strings and self.tokenizer is None:
      raise ValueError("stop_strings need a tokenizer; pass one to Sampler(...).")
    vocab = self.cfg.vocab_size
    bad = [int(p_) for p in prompts for p_ in p if not 0 <= int(p_) < vocab]
    if bad:
      raise ValueError(f"prompt token id {bad[0]} is outside the model's vocabulary "
                       f"[0, {vocab}); is the tokenizer the model's?")
    bias = np.zeros((vocab,), np.float32)
    for tid, b in sp.logit_bias:
      if not 0 <= int(tid) < vocab:
        raise ValueError(f"logit_bias names token id {tid}, outside the vocabulary [0, {vocab}).")
      bias[int(tid)] += float(b)
    pad_id = pad_id_of(self.tokenizer) if self.tokenizer is not None else 0

    lengths = np.asarray([len(p) for p in prompts], np.int32)
    p_len = bucket(int(lengths.max()), self.min_bucket)
    rows = round_up(n, self.batch_multiple)
    tokens = np.full((rows, p_len), pad_id, np.int32)
    for i, p in enumerate(prompts):
      tokens[i, :len(p)] = p
    fill = lambda x, v: np.concatenate([x, np.full(rows - n, v, np.int32)])
    table = np.full((MAX_STOPS, MAX_STOP_LEN), -1, np.int32)
    for i, q in enumerate(stops):
      table[i, MAX_STOP_LEN - len(q):] = q
    ext = np.zeros((MAX_EXTEND_IDS,), np.int32)
    ext[:len(sp.extend_ids)] = sp.extend_ids
    controls = DecodeControls(
        max_new=fill(max_new, 0), min_new=fill(min_new, 0), stops=table, bias=bias,
        temperature=np.float32(sp.temperature), top_k=np.int32(sp.top_k),
        top_p=np.float32(sp.top_p), pad_id=np.int32(pad_id), ext_ids=ext,
        ext_len=np.int32(len(sp.extend_ids)), max_ext=np.int32(sp.extensions),
        use_top_k=sp.top_k > 0, use_top_p=sp.top_p < 1, greedy_only=sp.temperature == 0)
    shared, source = share_plan(prompts, rows) if self.share_prompts else (0, np.arange(rows))
    return Plan(n=n, tokens=tokens, lengths=fill(lengths, 1),
                g_len=bucket(int(max(max_new.max(), 1)), self.min_bucket), controls=controls,
                stops=stops, stop_strings=tuple(sp.stop_strings),
                seed=seed, record_logits=record_logits, shared=shared, source=source)

  def _put(self, x):
    """A host array sharded over the batch axes (its first dimension)."""
    spec = nn.logical_to_mesh_axes(("activation_batch",) + (None,) * (np.ndim(x) - 1),
                                   self.rules)
    return jax.device_put(x, NamedSharding(self.mesh, P(*spec)))

  def run(self, plan: Plan) -> Decoded:
    """Prefill, then the decode loop in runs of at most `self.chunk` steps (where stop
    strings or a batch to shrink need the host): between runs, rows whose new text
    holds a stop string are ended, and once at most half of the rows are still going,
    those move to a smaller batch (a power of two times the mesh's batch multiple),
    since a finished row costs as much per step as a live one. Rows are independent,
    so this changes no row's tokens."""
    rows, p_len = plan.tokens.shape
    g_len, c = plan.g_len, plan.controls
    base = jax.random.key(plan.seed)
    ctl = c.replace(max_new=self._put(c.max_new), min_new=self._put(c.min_new))
    t0 = time.perf_counter()
    with mesh_context(self.mesh, self.rules):
      # The cache starts with the prompt's slots and grows as decoding needs (see below).
      cache, logits, window = self._prefill_plan(plan)
      logits.block_until_ready()
      t1 = time.perf_counter()
      zeros = lambda *shape, dt=np.int32: self._put(np.zeros((rows,) + shape, dt))
      state = DecodeState(
          cache=cache, logits=logits, index=self._put(plan.lengths), n=zeros(), drawn=zeros(),
          done=self._put(c.max_new <= 0),
          out=self._put(np.full((rows, g_len), c.pad_id, np.int32)),
          keys=jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(rows)),
          ext_q=self._put(np.full(rows, c.ext_len, np.int32)), ext_n=zeros(),
          ext_at=zeros(g_len, dt=bool),
          rec=(jnp.zeros((rows, g_len, self.cfg.vocab_size), jnp.float32)
               if plan.record_logits else None))
      stops = plan.stop_strings
      budget = -(-g_len // self.chunk) * self.chunk if stops else g_len  # steps in all
      shrink = self.shrink_batch and rows > self.batch_multiple
      chunk = self.chunk if stops or shrink else budget
      live = np.arange(rows)         # the plan row of each state row
      kept = None                    # host results of the rows moved out of the batch
      top = int(plan.lengths.max())  # the furthest slot any row writes next
      checked = np.zeros(rows, np.int32)  # per row, tokens whose text was searched
      # Only text near the new tokens is searched: a stop string of m characters spans
      # at most 4m tokens (byte-level tokens of UTF-8), plus one whose leading space a
      # detokenizer may drop. `finish` cuts at the first stop in the whole text.
      margin = 4 * max((len(s) for s in stops), default=0) + 1
      while budget > 0:
        # Attention reads every slot of the cache, so the cache holds only the slots in
        # the power-of-two bucket above the furthest row (at most prompt + generation
        # bucket), and a chunk runs until that bucket is full: a short prompt in a long
        # generation does not pay for empty slots. One program per bucket.
        need = min(p_len + g_len, bucket(top + 1, self.min_bucket))
        if need > window:
          window = need
          state = state.replace(cache=self._grow(state.cache, window=window))
        steps = min(budget, max(window - top, 1), chunk)
        state = self._decode(self.params, state, ctl, jnp.int32(steps))
        budget -= steps
        # One transfer a run: what the next run needs, and the text for stop strings.
        done, index, *text = jax.device_get((state.done, state.index) +
                                            ((state.out, state.n) if stops else ()))
        top = int(index.max())
        if done.all():
          break
        if stops:
          out, cnt = text
          hit = np.zeros(len(live), bool)
          for i in np.flatnonzero(~done):
            lo = max(0, int(checked[i]) - margin)
            hit[i] = _find_stop(self.tokenizer.decode(out[i, lo:cnt[i]].tolist()), stops) >= 0
          checked = cnt
          if hit.any():
            done = done | hit
            state = state.replace(done=self._put(done))
            if done.all():
              break
        going = np.flatnonzero(~done)
        smaller = round_up(bucket(len(going), 1), self.batch_multiple)
        if shrink and smaller <= len(live) // 2:
          kept = self._keep(kept, state, live, rows)
          keep = np.concatenate([going, np.flatnonzero(done)[:smaller - len(going)]])
          state, ctl = self._take(state, ctl, self._put(keep.astype(np.int32)))
          live, checked = live[keep], checked[keep]
      kept = self._keep(kept, state, live, rows)
      out, cnt, ext_at, rec = kept
    # Wall times of the last call (the first call per shape includes compilation).
    self.last_timings = dict(prefill_s=t1 - t0, decode_s=time.perf_counter() - t1,
                             decode_steps=int(cnt.max()), rows=plan.n)
    return Decoded(out=out, n=cnt, ext_at=ext_at, rec=rec)

  def _prefill_plan(self, plan: Plan):
    """(cache, next-token logits, cache slots) after the prompts. Shared leading tokens
    (plan.shared) are prefilled in one row and copied; then each distinct prompt's
    remainder is prefilled once (plan.source) and copied to the rows that repeat it."""
    rows, p_len = plan.tokens.shape
    uniq = np.flatnonzero(plan.source[:plan.n] == np.arange(plan.n))
    u_rows = round_up(len(uniq), self.batch_multiple)
    if not plan.shared and u_rows == rows:
      cache, logits = self._prefill(self.params, self._put(plan.tokens),
                                    self._put(plan.lengths), cache_len=p_len)
      return cache, logits, p_len
    sel = np.concatenate([uniq, np.zeros(u_rows - len(uniq), np.int64)])  # fill: row 0 again
    lengths = plan.lengths[sel]
    s, window = plan.shared, p_len
    if s:
      tail_len = bucket(int(lengths.max()) - s, self.min_bucket)
      window = max(p_len, s + tail_len)
      bm = self.batch_multiple
      head = np.repeat(plan.tokens[:1, :s], bm, axis=0)
      cache, logits = self._prefill(self.params, self._put(head),
                                    self._put(np.full(bm, s, np.int32)), cache_len=window)
      cache, _ = self._copy_rows(cache, logits, self._put(np.zeros(u_rows, np.int32)))
      tail = np.full((u_rows, tail_len), plan.controls.pad_id, np.int32)
      for j, r in enumerate(sel):
        tail[j, :lengths[j] - s] = plan.tokens[r, s:lengths[j]]
      cache, logits = self._extend(self.params, cache, self._put(tail),
                                   self._put(np.full(u_rows, s, np.int32)),
                                   self._put((lengths - s).astype(np.int32)))
    else:
      cache, logits = self._prefill(self.params, self._put(plan.tokens[sel]),
                                    self._put(lengths), cache_len=p_len)
    where = {int(r): j for j, r in enumerate(uniq)}
    back = np.asarray([where[int(r)] for r in plan.source], np.int32)
    cache, logits = self._copy_rows(cache, logits, self._put(back))
    return cache, logits, window

  def _keep(self, kept, state: DecodeState, live, rows: int):
    """Host (out, n, ext_at, rec) of all `rows` plan rows, with the state's rows (plan
    rows `live`) written over `kept` (the results so far, or None)."""
    got = jax.device_get((state.out, state.n, state.ext_at, state.rec))
    if kept is None:
      kept = tuple(None if x is None else np.zeros((rows,) + x.shape[1:], x.dtype) for x in got)
    for dst, src in zip(kept, got):
      if dst is not None:
        dst[live] = src
    return kept

  def finish(self, plan: Plan, dec: Decoded) -> list[Completion]:
    """Completions of the real rows: ids cut at the end, text, and why each ended."""
    results = []
    decode = self.tokenizer.decode if self.tokenizer is not None else (lambda _: "")
    for i in range(plan.n):
      toks = dec.out[i, :dec.n[i]].tolist()
      reason, text, stop_len = "length", None, 0
      if plan.stop_strings:
        text = decode(toks)
        cut = _find_stop(text, plan.stop_strings)
        if cut >= 0:
          reason, text = "stop_string", text[:cut]
          toks = toks[:_stop_prefix(self.tokenizer, toks, plan.stop_strings)]
      if reason == "length":
        stop_len = max((len(q) for q in plan.stops if tuple(toks[-len(q):]) == q), default=0)
        if stop_len:
          reason, text = "stop_token", decode(toks[:-stop_len])
      if text is None:
        text = decode(toks)
      results.append(Completion(toks, text, reason,
                                dec.rec[i, :len(toks)] if dec.rec is not None else None,
                                np.flatnonzero(dec.ext_at[i, :len(toks)]).tolist(), stop_len))
    return results

  def generate_text(self, prompts: Sequence[str], sp: SamplingParams, seed: int = 0,
                    **kw) -> list[Completion]:
    if self.tokenizer is None:
      raise ValueError("generate_text needs a tokenizer; pass one to Sampler(...).")
    return self.generate([self.tokenizer.encode(p) for p in prompts], sp, seed, **kw)
