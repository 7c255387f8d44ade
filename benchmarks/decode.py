"""Decode speed: our sampler vs transformers' generate on the same weights (CPU, f32).

For each model (tiny, 100m; Llama layout, i.e. without QK-norm, so that
transformers' LlamaForCausalLM holds exactly the same function) and context
length, a random prompt of that many tokens is prefilled and NEW tokens are
decoded greedily. Prefill is excluded on both sides: ours is the decode loop's
own wall time (Sampler.last_timings); transformers' is time(prefill + NEW+1
tokens) - time(prefill + 1 token).

  .venv/bin/python benchmarks/decode.py [--models tiny,100m] [--contexts 128,512,2048] [--new 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import torch
import transformers

from configs.model import presets
from sbp_jax.convert import safetensors_import as si
from sbp_jax.generate.sampler import Sampler, SamplingParams


def hf_model(preset: str):
  p = presets.PRESETS[preset]
  conf = transformers.LlamaConfig(
      vocab_size=p["vocab_size"], hidden_size=p["d_model"], intermediate_size=p["d_ffn"],
      num_hidden_layers=p["num_layers"], num_attention_heads=p["num_heads"],
      num_key_value_heads=p["num_kv_heads"], max_position_embeddings=4096, rope_theta=5e5,
      rms_norm_eps=1e-5, tie_word_embeddings=False)
  torch.manual_seed(0)
  return transformers.LlamaForCausalLM(conf).float().eval()


def ours_from(model) -> Sampler:
  with tempfile.TemporaryDirectory() as d:
    model.config.save_pretrained(d)
    cfg, _ = si.model_config_from_hf(d, dtype="float32")
  tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  params = si.convert_tensors(tensors, cfg, where="benchmark")
  return Sampler(cfg, params, min_bucket=64)


def best_of(fn, reps=2):
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", default="tiny,100m")
  ap.add_argument("--contexts", default="128,512,2048")
  ap.add_argument("--new", type=int, default=32)
  args = ap.parse_args()
  new = args.new
  print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; f32, "
        f"batch 1, greedy, {new} decoded tokens")
  print(f"{'model':<6}{'ctx':>6}{'ours tok/s':>12}{'ms/tok':>9}{'hf tok/s':>10}{'ms/tok':>9}"
        f"{'ratio':>8}{'max |dlogit|':>14}")
  for preset in args.models.split(","):
    model = hf_model(preset)
    sampler = ours_from(model)
    v = sampler.cfg.vocab_size
    for ctx in [int(c) for c in args.contexts.split(",")]:
      prompt = np.random.default_rng(ctx).integers(0, v, size=ctx).tolist()
      sp = lambda n: SamplingParams(temperature=0.0, max_new_tokens=n, stop_ids=())
      run = lambda n: sampler.generate([prompt], sp(n))
      run(new)  # compile
      ours = []
      for _ in range(3):  # decode loop time alone (prefill excluded), best of 3
        run(new)
        ours.append(sampler.last_timings["decode_s"] / sampler.last_timings["decode_steps"])
      ours = min(ours) * new
      ids = torch.tensor([prompt])

      def hf(n):
        with torch.no_grad():
          return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                pad_token_id=0)
      hf(2)
      theirs = best_of(lambda: hf(new + 1)) - best_of(lambda: hf(1))
      # Same weights, same function: greedy tokens and first-step logits agree.
      out = sampler.generate([prompt], sp(new), record_logits=True)[0]
      with torch.no_grad():
        ref = model(ids).logits[0, -1].numpy()
      dlogit = float(np.abs(out.logits[0] - ref).max())
      hf_tokens = hf(new)[0, ctx:].tolist()
      same = "" if hf_tokens == out.tokens else "  (greedy tokens differ)"
      print(f"{preset:<6}{ctx:>6}{new / ours:>12.1f}{1e3 * ours / new:>9.2f}{new / theirs:>10.1f}"
            f"{1e3 * theirs / new:>9.2f}{theirs / ours:>8.2f}{dlogit:>14.2e}{same}", flush=True)


if __name__ == "__main__":
  main()
