"""Eval scoring throughput of the bucketed batch Scorer: scored tokens per second
(the tokens whose log-likelihood counts) and input tokens per second (every real
token the model reads, contexts included; padding excluded).

Random-weight models (f32) score a fixed set of requests shaped like the eval
suite: a multiple-choice-like mix (short continuations after contexts of 20-300
tokens) and whole documents (every token scored, in rolling windows). The
first pass includes compilation (one per length bucket); the reported rate is
the best of the following passes. "fill" is real input tokens over padded slots.

  .venv/bin/python benchmarks/eval_throughput.py [--models tiny,100m] [--batch_sizes 8,32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import numpy as np

from configs.model import presets
from sbp_jax.eval.scorer import Request, Scorer, rolling_requests
from sbp_jax.model import ModelConfig, Transformer


def workload(vocab: int, max_len: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  mc = []
  for _ in range(256):  # 64 questions x 4 choices
    ctx = rng.integers(3, vocab, int(rng.integers(20, 300))).tolist()
    cont = rng.integers(3, vocab, int(rng.integers(1, 12))).tolist()
    mc.append(Request(tuple(ctx + cont), len(cont)))
  docs = []
  for _ in range(24):
    doc = rng.integers(3, vocab, int(rng.integers(200, 1500))).tolist()
    docs += rolling_requests(doc, (1,), max_len, overlap=0)
  return {"multiple-choice mix": mc, "documents": docs}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--models", default="tiny")
  p.add_argument("--batch_sizes", default="8,32")
  p.add_argument("--max_len", type=int, default=512)
  p.add_argument("--reps", type=int, default=2)
  a = p.parse_args()
  print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}; max_len {a.max_len}")
  head = (f"{'model':<6}{'workload':<21}{'batch':>6}{'requests':>9}{'scored':>8}{'fill':>8}"
          f"{'buckets':>8}{'1st pass s':>11}{'scored tok/s':>13}{'input tok/s':>12}")
  print(head)
  for name in a.models.split(","):
    cfg = ModelConfig.from_dict(presets.get(name, dtype="float32", remat_policy="none",
                                            max_seq_len=a.max_len))
    params = nn.meta.unbox(jax.jit(Transformer(cfg).init)(jax.random.key(0),
                                                          jnp.zeros((1, 8), jnp.int32))["params"])
    for wname, reqs in workload(cfg.vocab_size, a.max_len).items():
      for bs in (int(b) for b in a.batch_sizes.split(",")):
        scorer = Scorer(cfg, params, batch_size=bs, max_len=a.max_len)
        t = time.perf_counter()
        scorer.score(reqs)
        first = time.perf_counter() - t
        st = scorer.stats
        scored, inputs, padded = st["scored_tokens"], st["input_tokens"], st["padded_tokens"]
        best = float("inf")
        for _ in range(a.reps):
          t = time.perf_counter()
          scorer.score(reqs)
          best = min(best, time.perf_counter() - t)
        print(f"{name:<6}{wname:<21}{scorer.batch_size:>6}{len(reqs):>9}{scored:>8}"
              f"{inputs / padded:>8.2f}{len(scorer.buckets_compiled):>8}{first:>11.1f}"
              f"{scored / best:>13.0f}{inputs / best:>12.0f}")


if __name__ == "__main__":
  main()
