"""Fit report: does each SBP workload fit each v5p slice? (AOT, from a CPU host)

For {3B, 6B} x {v5p-32, v5p-64, v5p-128, v5p-256} x {pretrain at 4,096 context,
synthesizer-tuning at 8,192, synthesis decode}, compiles the real program for a
compile-only libtpu topology and prints per-chip memory, whether it fits the
chip's 95 GiB, model FLOPs per step and the step time at an assumed MFU:

  .venv/bin/python benchmarks/fit_table.py                      # all 24 cells
  .venv/bin/python benchmarks/fit_table.py --models=3b --slices=v5p-128 --mfu=0.45
  .venv/bin/python benchmarks/fit_table.py --models=3b --slices=v5p-128 \
      --workloads=synth_tune --attentions=einsum,splash   # splash beside einsum

It needs libtpu on the path, not a TPU: see benchmarks/aot_compile.py for the
two ways to install it (the `[tpu]` extra, or `pip install --target` a folder
of its own put on PYTHONPATH).

Training cells use the paper's batches (2,048 x 4,096 = 8M tokens for
pretraining; 2,048 x 8,192 = 16M tokens for synthesizer-tuning), FSDP over all
chips (mesh (1, N, 1)) and gradient accumulation chosen so that each chip holds
`--tokens_per_chip` tokens per microbatch, doubled while the compiler reports out
of memory (the table shows the accumulation that fits). The decode cell is one sampling step
for `--decode_batch_per_chip` sequences with a KV cache of 8,192 tokens (the
synthesizer's context), parameters in bfloat16. Step time = model FLOPs /
(chips x peak x MFU); for decode it is the time to stream the weights and the
cache once from HBM (decode is bandwidth bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aot_compile  # noqa: E402  (sets the compile-only environment before JAX starts)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from configs.base import get_base  # noqa: E402
from sbp_jax.model import (CACHE_AXES, ModelConfig, Transformer, count_params, flops_per_token,  # noqa: E402
                           init_cache, param_logical_specs)
from sbp_jax.parallel import make_mesh, make_rules, mesh_context  # noqa: E402

GiB = 1024 ** 3
# v5p-N counts TensorCores: N/2 chips. libtpu topology names (chips, x*y*z).
SLICES = {"v5p-32": "v5p:2x2x4", "v5p-64": "v5p:2x4x4", "v5p-128": "v5p:4x4x4",
          "v5p-256": "v5p:4x4x8"}
HBM_BW = 2.765e12  # v5p HBM bytes/s per chip (public spec)


def train_cell(model: str, topology: str, seq_len: int, global_batch: int,
               tokens_per_chip: int, attention: str = "einsum") -> dict:
  hbm, peak = aot_compile._chip(topology)
  n = len(aot_compile.tpu_devices(topology))
  per_chip_seqs = global_batch // n
  micro = max(tokens_per_chip // seq_len, 1)
  acc = max(per_chip_seqs // micro, 1)
  while True:
    argv = [f"--model={model}", f"--topology={topology}", f"--seq_len={seq_len}",
            f"--global_batch={global_batch}", f"--grad_accum={acc}", "--probe_flops=0",
            f"--attention={attention}"]
    r = aot_compile.compile_train_step(aot_compile.parse_args(argv))
    # Out of memory: halve the microbatch (more accumulation) until one sequence per chip.
    if r["total"] is not None or acc >= per_chip_seqs:
      break
    acc *= 2
  r.update(acc=acc, peak=peak, hbm=hbm, n=n)
  return r


def decode_cell(model: str, topology: str, cache_len: int, batch_per_chip: int) -> dict:
  hbm, peak = aot_compile._chip(topology)
  devices = aot_compile.tpu_devices(topology)
  n = len(devices)
  mesh = make_mesh((1, -1, 1), devices=devices)
  rules = make_rules()
  # Decoding runs the layers as a loop (as the Sampler does), so caches update in place.
  cfg = dataclasses.replace(ModelConfig.from_dict(get_base(model).model),
                            param_dtype="bfloat16", remat_policy="none", scan_layers=False)
  tmodel = Transformer(cfg)
  specs = param_logical_specs(tmodel)
  abstract = nn.meta.unbox(jax.eval_shape(
      lambda r: tmodel.init(r, jnp.zeros((1, 8), jnp.int32)), jax.random.key(0))["params"])
  psh = nn.logical_to_mesh_sharding(specs, mesh, rules)
  params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, psh)
  b = batch_per_chip * n
  cache = [{name: jax.ShapeDtypeStruct(
      buf.shape, buf.dtype,
      sharding=nn.logical_to_mesh_sharding(P(*CACHE_AXES[name]), mesh, rules))
             for name, buf in layer.items()}
           for layer in jax.eval_shape(lambda: init_cache(cfg, b, cache_len, jnp.bfloat16))]
  bsh = NamedSharding(mesh, P(("data", "fsdp")))
  tokens = jax.ShapeDtypeStruct((b, 1), jnp.int32, sharding=NamedSharding(mesh, P(("data", "fsdp"))))
  index = jax.ShapeDtypeStruct((b,), jnp.int32, sharding=bsh)

  def step(params, cache, tokens, index):
    out = tmodel.apply({"params": params}, tokens, cache=cache, cache_index=index)
    return jnp.argmax(out["logits"][:, -1], -1), out["cache"]

  t0 = time.perf_counter()
  with mesh_context(mesh, rules):
    compiled = jax.jit(step, donate_argnums=(1,)).lower(params, cache, tokens, index).compile()
  ma = compiled.memory_analysis()
  total = (ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
           + ma.temp_size_in_bytes + ma.generated_code_size_in_bytes)
  weight_bytes = 2 * count_params(cfg) / n
  cache_bytes = 2 * 2 * cfg.num_layers * batch_per_chip * cache_len * cfg.num_kv_heads * \
      cfg.resolved_head_dim
  return dict(total=total, hbm=hbm, n=n, compile_s=time.perf_counter() - t0,
              flops=2 * count_params(cfg) * b, step_s=(weight_bytes + cache_bytes) / HBM_BW,
              mesh=tuple(mesh.shape[a] for a in mesh.axis_names), batch=b)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--models", default="3b,6b")
  p.add_argument("--slices", default=",".join(SLICES))
  p.add_argument("--workloads", default="pretrain,synth_tune,decode")
  p.add_argument("--mfu", type=float, default=0.4, help="assumed MFU for step-time estimates")
  p.add_argument("--tokens_per_chip", type=int, default=32768,
                 help="tokens per chip per microbatch (sets gradient accumulation)")
  p.add_argument("--decode_batch_per_chip", type=int, default=16)
  p.add_argument("--attentions", default="einsum,splash",
                 help="model.attention values compared in the training cells")
  args = p.parse_args(argv)
  unknown = sorted(set(args.slices.split(",")) - set(SLICES))
  if unknown:
    p.error(f"--slices: unknown {unknown}; known: {', '.join(SLICES)}")
  aot_compile.tpu_devices(SLICES[args.slices.split(",")[0]])  # no libtpu: say so before the table
  rows = []
  header = ("model", "slice", "chips", "workload", "attention", "mesh", "accum/batch", "GiB/chip",
            "fits",
            "model TFLOP/step", "est. step s")
  print(" | ".join(header), flush=True)
  for model in args.models.split(","):
    for sl in args.slices.split(","):
      topo = SLICES[sl]
      for wl in args.workloads.split(","):
        # Decode has one attention path (the cache); training compares each choice.
        for attention in (["einsum"] if wl == "decode" else args.attentions.split(",")):
          if wl == "decode":
            r = decode_cell(model, topo, 8192, args.decode_batch_per_chip)
            acc_col, step_s = f"b={r['batch']}", r["step_s"]
          else:
            seq = 4096 if wl == "pretrain" else 8192
            r = train_cell(model, topo, seq, 2048, args.tokens_per_chip, attention)
            cfg = ModelConfig.from_dict(get_base(model).model)
            r["flops"] = flops_per_token(cfg, seq) * 2048 * seq
            acc_col = f"acc={r['acc']}"
            step_s = r["flops"] / (r["n"] * r["peak"] * args.mfu)
          fits = "OOM" if r["total"] is None else ("yes" if r["total"] <= r["hbm"] else "NO")
          gib = "-" if r["total"] is None else f"{r['total'] / GiB:.1f}"
          row = (model, sl, str(r["n"]), wl, attention, str(r["mesh"]), acc_col, gib, fits,
                 f"{r['flops'] / 1e12:,.0f}",
                 f"{step_s:.3f}" if wl == "decode" else f"{step_s:.1f}")
          rows.append(row)
          print(" | ".join(row), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
