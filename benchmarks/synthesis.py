"""SBP synthesis throughput on this machine: kept synthetic tokens per second.

Runs the synthesize stage's own code path (seed sampling, d1 <|doc_sep|> prompt,
sampler with T=1.0 / top_p=0.9, 13-shingle filter) with the demo model shape
(configs/demo_realtext_cpu.py; random weights: the speed does not depend on them) over
demo-corpus seed documents, for a few batch sizes. Each size's run is made twice
and the second is timed: seeds of other lengths compile other programs (prompt and
cache buckets), and the first run compiles all of them.

  .venv/bin/python benchmarks/synthesis.py [--batch_sizes 16,64] [--new 256] [--prompt 384]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top

from configs import demo_realtext_cpu
from sbp_jax.generate.generate_job import load_params
from sbp_jax.generate.sampler import Sampler, SamplingParams
from sbp_jax.generate.text_codec import make_tokenizer
from sbp_jax.model import ModelConfig
from sbp_jax.parallel import make_mesh, make_rules
from sbp_jax.sbp import synthesize as syn


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch_sizes", default="16,64")
  ap.add_argument("--new", type=int, default=256)
  ap.add_argument("--prompt", type=int, default=384)
  ap.add_argument("--batches", type=int, default=2)
  args = ap.parse_args()
  c = demo_realtext_cpu.get_config()
  cfg = ModelConfig.from_dict(c.model)
  mesh, rules = make_mesh((1, 1, 1), devices=jax.devices()[:1]), make_rules()
  tok = make_tokenizer(c.tokenizer)
  sampler = Sampler(cfg, load_params(cfg, "", mesh, rules, 0), tokenizer=tok, mesh=mesh,
                    rules=rules)
  docs = syn.SeedDocs(c.experiment.real_files)
  print(f"{'batch':>6}{'new':>6}{'kept tok':>10}{'seconds':>9}{'kept tok/s':>12}"
        f"{'gen tok/s':>11}{'vs first':>10}")
  first = None
  for bs in [int(b) for b in args.batch_sizes.split(",")]:
    sp = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=args.new)
    gen = syn.sampler_generate_fn(sampler, sp, args.prompt)
    for _ in range(2):  # the first run compiles
      with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        tot = syn.synthesize_to_dir(docs, gen, d, seed=0,
                                    target_tokens=bs * args.new * args.batches,
                                    tokens_per_shard=bs * args.new * args.batches, batch_size=bs,
                                    max_batches_per_shard=args.batches, progress=False)
        dt = time.perf_counter() - t0
    rate = tot["kept_tokens"] / dt
    first = first or rate
    print(f"{bs:>6}{args.new:>6}{tot['kept_tokens']:>10}{dt:>9.1f}{rate:>12.0f}"
          f"{tot['generated_tokens'] / dt:>11.0f}{rate / first:>9.2f}x", flush=True)


if __name__ == "__main__":
  main()
