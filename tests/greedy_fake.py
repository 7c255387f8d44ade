"""A stand-in for Sampler whose greedy next token is a pure function of the whole
prefix (a hash), ending its thinking or the sequence now and then: what a real
model does under greedy decoding, at no cost and with ends at varied places."""

import zlib

from sbp_jax.data import special_tokens as st
from sbp_jax.generate.sampler import Completion
from sbp_jax.generate.text_codec import ByteTokenizer


class GreedyFake:

  def __init__(self, end_every: int = 9, eos_every: int = 61):
    self.tokenizer = ByteTokenizer()
    self.end = self.tokenizer.token_to_id(st.THINK_END)
    self.eos = self.tokenizer.eos_ids[0]
    self.end_every, self.eos_every = end_every, eos_every
    self.calls = 0

  def next_token(self, prefix, allow_stop: bool) -> int:
    h = zlib.crc32(bytes(str(prefix), "ascii"))
    if allow_stop and h % self.end_every == 0:
      return self.end
    if allow_stop and h % self.eos_every == 1:
      return self.eos
    return 97 + h % 26

  def generate(self, prompts, sp, seed=0, max_new_tokens=None, min_new_tokens=None):
    self.calls += 1
    stops = set(sp.stop_ids) | {q[0] for q in sp.stop_sequences if len(q) == 1}
    out = []
    for i, p in enumerate(prompts):
      hi = sp.max_new_tokens if max_new_tokens is None else max_new_tokens[i]
      lo = sp.min_new_tokens if min_new_tokens is None else min_new_tokens[i]
      toks, reason, ext_at, queue = [], "length", [], []
      while len(toks) < hi:
        if queue:
          t = queue.pop(0)
        else:
          t = self.next_token(list(p) + toks, allow_stop=len(toks) >= lo)
          if t in stops and len(ext_at) < sp.extensions:
            ext_at.append(len(toks))
            t, queue = sp.extend_ids[0], list(sp.extend_ids[1:])
        toks.append(t)
        if t in stops:
          reason = "stop_token"
          break
      body = toks[:-1] if reason == "stop_token" else toks
      out.append(Completion(toks, self.tokenizer.decode(body), reason, None, ext_at,
                            int(reason == "stop_token")))
    return out
