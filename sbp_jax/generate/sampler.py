"""Batched sampling with a functional KV cache: one prefill, then a jitted decode loop.

Prompts are right-padded to a length bucket and prefilled together; each row's
`cache_index` is its own length, so the padding slots it later overwrites are
never attended to (attention is causal by slot). The decode loop is a
`lax.while_loop` compiled once per (batch, prompt bucket, generation bucket,
filter flags); each step runs the model on one token per row, so a token costs
the same however much has been generated (attention spans the fixed-size
cache). Stop strings are checked on the host between chunks of steps.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sbp_jax.generate.tokenizer import eos_ids_of, pad_id_of
from sbp_jax.model import CACHE_AXES, ModelConfig, Transformer, init_cache
from sbp_jax.parallel import (batch_shards, bucket, make_mesh, make_rules, mesh_context, place_params,
                              round_up)

MAX_STOP_IDS = 16
MAX_EXTEND_IDS = 16
_NEG = -jnp.inf


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  temperature: float = 1.0   # 0 = greedy
  top_k: int = 0             # 0 = off
  top_p: float = 1.0         # 1 = off
  max_new_tokens: int = 256
  min_new_tokens: int = 0    # stop ids are masked until this many tokens exist
  stop_ids: tuple[int, ...] | None = None  # None: the tokenizer's end-of-sequence ids
  stop_strings: tuple[str, ...] = ()
  logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
  # Suppress a stop up to `extensions` times per row: the stop token is replaced by
  # `extend_ids` (e.g. "Wait"), which are forced, and decoding goes on (s1's budget
  # forcing). Done inside the decode loop, so extending costs no extra prefill.
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
    if len(self.extend_ids) > MAX_EXTEND_IDS:
      raise ValueError(f"extend_ids has {len(self.extend_ids)} tokens; at most "
                       f"{MAX_EXTEND_IDS} are supported.")


@dataclasses.dataclass
class Completion:
  tokens: list[int]        # generated ids, with the stop token when one ended the row
  text: str                # decoded, without the stop token / stop string
  finish_reason: str       # "stop_token" | "stop_string" | "length"
  logits: np.ndarray | None = None  # [len(tokens), vocab] when record_logits
  extended_at: list[int] = dataclasses.field(default_factory=list)  # where extend_ids begin


def filter_logits(x: jax.Array, top_k: jax.Array, top_p: jax.Array, use_top_k: bool,
                  use_top_p: bool) -> jax.Array:
  """Masks (to -inf) everything outside the top-k and then the top-p nucleus.

  x: [b, V] temperature-scaled logits. The nucleus is the smallest prefix of
  tokens, by decreasing probability, whose mass reaches top_p.
  """
  if not (use_top_k or use_top_p):
    return x
  v = x.shape[-1]
  srt = -jnp.sort(-x, axis=-1)
  rank = jnp.arange(v)[None, :]
  if use_top_k:
    k = jnp.clip(top_k, 1, v)
    kth = jnp.take_along_axis(srt, jnp.broadcast_to(k - 1, (x.shape[0], 1)), axis=-1)
    x = jnp.where(x < kth, _NEG, x)
    srt = jnp.where(rank < k, srt, _NEG)
  if use_top_p:
    probs = jax.nn.softmax(srt, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly above each rank
    n_keep = jnp.maximum(jnp.sum(before < top_p, axis=-1, keepdims=True), 1)
    thresh = jnp.take_along_axis(srt, n_keep - 1, axis=-1)
    x = jnp.where(x < thresh, _NEG, x)
  return x


def sample_tokens(logits: jax.Array, keys: jax.Array, temperature, top_k, top_p,
                  use_top_k: bool = False, use_top_p: bool = False) -> jax.Array:
  """One token per row. temperature 0 is argmax; keys: [b] typed PRNG keys."""
  greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  x = logits / jnp.maximum(temperature, 1e-6)
  x = filter_logits(x, top_k, top_p, use_top_k, use_top_p)
  sampled = jax.vmap(jax.random.categorical)(keys, x).astype(jnp.int32)
  return jnp.where(temperature <= 0, greedy, sampled)


def _find_stop(text: str, stops: Sequence[str]) -> int:
  hits = [text.find(s) for s in stops if s and s in text]
  return min(hits) if hits else -1


class Sampler:
  """Generates continuations of token prompts with one model and its params.

  mesh/rules: the training mesh and logical rules (default: one device);
  parameters are placed with the model's logical shardings, the KV cache with
  CACHE_AXES, prompts over the batch axes (rows are padded to fill them).
  """

  def __init__(self, cfg: ModelConfig, params, tokenizer=None, mesh: Mesh | None = None,
               rules=None, chunk: int = 32, min_bucket: int = 16, cache_dtype=None):
    self.cfg = cfg
    self.model = Transformer(cfg)
    self.tokenizer = tokenizer
    self.mesh = mesh if mesh is not None else make_mesh((1, 1, 1), devices=jax.devices()[:1])
    self.rules = rules if rules is not None else make_rules()
    self.chunk = chunk
    self.min_bucket = min_bucket
    self.cache_dtype = cache_dtype
    self.batch_multiple = batch_shards(self.mesh, self.rules)
    self.last_timings: dict = {}
    self.params = place_params(params, cfg, self.mesh, self.rules)
    self._prefill = jax.jit(self._prefill_fn, static_argnames=("cache_len",))
    self._decode = jax.jit(self._decode_fn, static_argnames=("use_top_k", "use_top_p"),
                           donate_argnames=("state",))

  # -- jitted pieces -----------------------------------------------------------------

  def _constrain_cache(self, cache):
    return jax.tree.map(lambda c: nn.with_logical_constraint(c, CACHE_AXES), cache)

  def _prefill_fn(self, params, tokens, lengths, cache_len: int):
    b = tokens.shape[0]
    cache = self._constrain_cache(init_cache(self.cfg, b, cache_len, self.cache_dtype))
    out = self.model.apply({"params": params}, tokens, cache=cache,
                           cache_index=jnp.zeros((b,), jnp.int32), logits_at=lengths - 1)
    return self._constrain_cache(out["cache"]), out["logits"][:, 0]

  def _decode_fn(self, params, state, limit, max_new, min_new, stop_ids, bias, temperature,
                 top_k, top_p, pad_id, ext_ids, ext_len, max_ext, use_top_k: bool,
                 use_top_p: bool):
    b, g = state["out"].shape
    vocab = state["logits"].shape[-1]
    is_stop = jnp.any(jnp.arange(vocab)[None, :] == stop_ids[:, None], axis=0)  # [V]
    rows = jnp.arange(b)

    def cond(carry):
      step, st = carry
      return (step < limit) & ~jnp.all(st["done"])

    def body(carry):
      step, st = carry
      logits = st["logits"] + bias[None, :]
      logits = jnp.where(is_stop[None, :] & (st["n"] < min_new)[:, None], _NEG, logits)
      keys = jax.vmap(jax.random.fold_in)(st["keys"], st["n"])
      tok = sample_tokens(logits, keys, temperature, top_k, top_p, use_top_k, use_top_p)
      active = ~st["done"]
      # Extensions: a queued extension token is forced; a stop with extensions left
      # is replaced by the first extension token and queues the rest.
      forcing = st["ext_q"] < ext_len
      tok = jnp.where(forcing, ext_ids[jnp.minimum(st["ext_q"], MAX_EXTEND_IDS - 1)], tok)
      extend = active & ~forcing & is_stop[tok] & (st["ext_n"] < max_ext)
      tok = jnp.where(extend, ext_ids[0], tok)
      tok = jnp.where(active, tok, pad_id)
      slot = jnp.where(active, st["n"], g)  # out of range -> dropped
      new = dict(st)
      new["ext_q"] = jnp.where(extend, 1, st["ext_q"] + (forcing & active))
      new["ext_n"] = st["ext_n"] + extend
      new["ext_at"] = st["ext_at"].at[rows, slot].set(extend, mode="drop")
      new["out"] = st["out"].at[rows, slot].set(tok, mode="drop")
      if "rec" in st:
        new["rec"] = st["rec"].at[rows, slot].set(st["logits"], mode="drop")
      n = st["n"] + active
      new["n"] = n
      new["done"] = st["done"] | (active & (is_stop[tok] | (n >= max_new)))
      res = self.model.apply({"params": params}, tok[:, None], cache=st["cache"],
                             cache_index=st["index"])
      new["cache"] = self._constrain_cache(res["cache"])
      new["logits"] = res["logits"][:, 0]
      new["index"] = st["index"] + active
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
    n = len(prompts)
    if n == 0:
      return []
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
    if len(stop_ids) > MAX_STOP_IDS:
      raise ValueError(f"at most {MAX_STOP_IDS} stop ids are supported, got {len(stop_ids)}.")
    if sp.stop_strings and self.tokenizer is None:
      raise ValueError("stop_strings need a tokenizer; pass one to Sampler(...).")
    vocab = self.cfg.vocab_size
    bad = [int(p_) for p in prompts for p_ in p if not 0 <= int(p_) < vocab]
    if bad:
      raise ValueError(f"prompt token id {bad[0]} is outside the model's vocabulary "
                       f"[0, {vocab}); is the tokenizer the model's?")
    pad_id = pad_id_of(self.tokenizer) if self.tokenizer is not None else 0

    lengths = np.asarray([len(p) for p in prompts], np.int32)
    p_len = bucket(int(lengths.max()), self.min_bucket)
    g_len = bucket(int(max(max_new.max(), 1)), self.min_bucket)
    rows = round_up(n, self.batch_multiple)
    tokens = np.full((rows, p_len), pad_id, np.int32)
    for i, p in enumerate(prompts):
      tokens[i, :len(p)] = p
    lengths = np.concatenate([lengths, np.ones(rows - n, np.int32)])
    max_new = np.concatenate([max_new, np.zeros(rows - n, np.int32)])
    min_new = np.concatenate([min_new, np.zeros(rows - n, np.int32)])
    stops = np.full((MAX_STOP_IDS,), -1, np.int32)
    stops[:len(stop_ids)] = stop_ids
    ext = np.zeros((MAX_EXTEND_IDS,), np.int32)
    ext[:len(sp.extend_ids)] = sp.extend_ids
    bias = np.zeros((vocab,), np.float32)
    for tid, b in sp.logit_bias:
      if not 0 <= int(tid) < vocab:
        raise ValueError(f"logit_bias names token id {tid}, outside the vocabulary [0, {vocab}).")
      bias[int(tid)] += float(b)

    bsh = lambda nd: NamedSharding(self.mesh, P(*nn.logical_to_mesh_axes(
        ("activation_batch",) + (None,) * (nd - 1), self.rules)))
    put = lambda x: jax.device_put(x, bsh(np.ndim(x)))
    base = jax.random.key(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(rows))

    t0 = time.perf_counter()
    with mesh_context(self.mesh, self.rules):
      cache, logits = self._prefill(self.params, put(tokens), put(lengths),
                                    cache_len=p_len + g_len)
      logits.block_until_ready()
      t1 = time.perf_counter()
      state = dict(cache=cache, logits=logits, index=put(lengths), n=put(np.zeros(rows, np.int32)),
                   done=put(max_new <= 0), out=put(np.full((rows, g_len), pad_id, np.int32)),
                   keys=keys, ext_q=put(np.full(rows, len(sp.extend_ids), np.int32)),
                   ext_n=put(np.zeros(rows, np.int32)),
                   ext_at=put(np.zeros((rows, g_len), bool)))
      if record_logits:
        state["rec"] = jnp.zeros((rows, g_len, vocab), jnp.float32)
      args = (put(max_new), put(min_new), jnp.asarray(stops), jnp.asarray(bias),
              jnp.float32(sp.temperature),
              jnp.int32(sp.top_k), jnp.float32(sp.top_p), jnp.int32(pad_id),
              jnp.asarray(ext), jnp.int32(len(sp.extend_ids)), jnp.int32(sp.extensions))
      flags = dict(use_top_k=sp.top_k > 0, use_top_p=sp.top_p < 1)
      limit = self.chunk if sp.stop_strings else g_len
      for _ in range(-(-g_len // limit)):
        state = self._decode(self.params, state, jnp.int32(limit), *args, **flags)
        if not sp.stop_strings:
          break
        done, out, cnt = jax.device_get((state["done"], state["out"], state["n"]))
        if done.all():
          break
        hit = np.array([not done[i] and _find_stop(
            self.tokenizer.decode(out[i, :cnt[i]].tolist()), sp.stop_strings) >= 0
                        for i in range(rows)])
        if hit.any():
          state["done"] = put(done | hit)
          if (done | hit).all():
            break
      out, cnt, ext_at = jax.device_get((state["out"], state["n"], state["ext_at"]))
      rec = jax.device_get(state["rec"]) if record_logits else None
    # Wall times of the last call (the first call per shape includes compilation).
    self.last_timings = dict(prefill_s=t1 - t0, decode_s=time.perf_counter() - t1,
                             decode_steps=int(cnt.max()), rows=n)

    results = []
    stop_set = set(int(s) for s in stop_ids)
    for i in range(n):
      toks = out[i, :cnt[i]].tolist()
      reason = "length"
      text = None
      if sp.stop_strings:
        text = self.tokenizer.decode(toks)
        cut = _find_stop(text, sp.stop_strings)
        if cut >= 0:
          reason, text = "stop_string", text[:cut]
          # Keep the fewest tokens whose text already contains the stop string.
          for k in range(1, len(toks) + 1):
            if _find_stop(self.tokenizer.decode(toks[:k]), sp.stop_strings) >= 0:
              toks = toks[:k]
              break
      if reason == "length" and toks and toks[-1] in stop_set:
        reason = "stop_token"
        text = self.tokenizer.decode(toks[:-1]) if self.tokenizer is not None else ""
      if text is None:
        text = self.tokenizer.decode(toks) if self.tokenizer is not None else ""
      results.append(Completion(toks, text, reason,
                                rec[i, :len(toks)] if rec is not None else None,
                                np.flatnonzero(ext_at[i, :len(toks)]).tolist()))
    return results

  def generate_text(self, prompts: Sequence[str], sp: SamplingParams, seed: int = 0,
                    **kw) -> list[Completion]:
    if self.tokenizer is None:
      raise ValueError("generate_text needs a tokenizer; pass one to Sampler(...).")
    return self.generate([self.tokenizer.encode(p) for p in prompts], sp, seed, **kw)
