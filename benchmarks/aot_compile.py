"""Ahead-of-time compile of the full train step for a TPU topology, from a CPU host.

Lowers and compiles `make_train_step(...).jitted` (forward, backward, gradient
accumulation, clipping and AdamW update, state donated) for the real batch
shape and sharding rules on a compile-only TPU topology described by libtpu, so
memory and FLOPs per chip are known before a pod is booked. No TPU is needed:

  .venv/bin/python benchmarks/aot_compile.py --model=3b --topology=v5p:4x4x4
  .venv/bin/python benchmarks/aot_compile.py --model=6b --topology=v5p:4x4x4 \
      --ici=1,-1,1 --grad_accum=4
  .venv/bin/python benchmarks/aot_compile.py --model=3b --topology=v5p:4x4x4 \
      --seq_len=8192 --grad_accum=8 --attention=splash   # synthesizer-tuning, Pallas kernel

The topology comes from libtpu, which describes (and compiles for) TPU chips
on any x86 Linux host. Either install the package's TPU extra
(`pip install .[tpu]`, which pins the libtpu this JAX wants), or, to leave an
existing environment's packages alone, put libtpu in a folder of its own:

  .venv/bin/python -m pip install --no-deps --target /opt/libtpu_site 'libtpu==0.0.42.*'
  PYTHONPATH=$PWD:/opt/libtpu_site .venv/bin/python benchmarks/aot_compile.py ...

Without libtpu the script exits with a message saying this, before compiling.
Compiling takes minutes on a small host (about 10 min for 3B on 2 busy cores).
Exits 1 when the step does not fit the chip's HBM.

Prints the mesh, per-chip memory from `compiled.memory_analysis()` against the
chip's HBM, FLOPs per step from `compiled.cost_analysis()` next to the analytic
count, rough sizes of the largest activations, and whether the step fits.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

# Compile-only: never grab a real accelerator, and keep libtpu's start-up quiet
# on a host that is not a TPU VM (it only needs these to describe the topology).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("TPU_WORKER_ID", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.experimental import topologies  # noqa: E402

from configs.base import get_base  # noqa: E402
from sbp_jax.model import ModelConfig, Transformer, count_params, flops_per_token  # noqa: E402
from sbp_jax.parallel import batch_sharding, make_mesh, make_rules, mesh_context  # noqa: E402
from sbp_jax.train.optim import make_optimizer, make_schedule  # noqa: E402
from sbp_jax.train.state import state_shardings  # noqa: E402
from sbp_jax.train.step import BATCH_KEYS, make_train_step, weighted_nll  # noqa: E402

GiB = 1024 ** 3
# Per-chip HBM and peak dense bf16 FLOP/s by topology prefix (public TPU specs).
CHIPS = {"v5p": (95 * GiB, 459e12), "v5e": (16 * GiB, 197e12), "v4": (32 * GiB, 275e12),
         "v6e": (32 * GiB, 918e12)}


NO_LIBTPU = (
    "Compiling for a TPU topology needs libtpu (a TPU does not), and this Python cannot import "
    "it. Install the TPU extra (`pip install .[tpu]`), or keep this environment as it is: "
    "`python -m pip install --no-deps --target DIR 'libtpu==0.0.42.*'` and run with "
    "PYTHONPATH=$PWD:DIR (or point TPU_LIBRARY_PATH at libtpu.so).")


def tpu_devices(topology: str) -> list:
  """The compile-only devices of a libtpu topology name such as 'v5p:4x4x4'."""
  try:
    return topologies.get_topology_desc(platform="tpu", topology_name=topology).devices
  except RuntimeError as e:  # JAX's words for "no libtpu found"
    if "TPU support not installed" not in str(e):
      raise
    raise SystemExit(NO_LIBTPU) from None


def _ints(s: str) -> tuple[int, ...]:
  return tuple(int(x) for x in s.split(","))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default="3b", help="model preset (configs/model/presets.py)")
  p.add_argument("--topology", default="v5p:4x4x4", help="libtpu topology name, e.g. v5p:4x4x4")
  p.add_argument("--ici", type=_ints, default=(1, -1, 1),
                 help="mesh shape data,fsdp,tensor (one entry may be -1)")
  # 4 microbatches (8 sequences of 4096 per chip on 64 chips) fit 3B and 6B on v5p;
  # 1 does not (the compiler reports out of memory).
  p.add_argument("--grad_accum", type=int, default=4, help="gradient accumulation steps")
  p.add_argument("--seq_len", type=int, default=4096)
  p.add_argument("--global_batch", type=int, default=2048)
  p.add_argument("--remat", default=None, help="override model.remat_policy (none|full|dots|...)")
  p.add_argument("--attention", default=None, help="override model.attention (einsum|dot_product|splash)")
  p.add_argument("--hbm_gib", type=float, default=None, help="per-chip HBM (default: by chip)")
  p.add_argument("--probe_flops", type=int, default=1,
                 help="1: also count XLA FLOPs on an unrolled single-sequence forward+backward "
                      "(no scans, so every layer is counted), scaled to the global batch")
  p.add_argument("--dump_hlo", default="", help="write the optimized HLO text to this file")
  return p.parse_args(argv)


def _chip(topology: str) -> tuple[int, float]:
  kind = topology.split(":")[0].lower()
  if kind not in CHIPS:
    raise ValueError(f"--topology={topology!r}: unknown chip {kind!r}; known: {sorted(CHIPS)} "
                     f"(or pass --hbm_gib).")
  return CHIPS[kind]


def _table(title: str, rows: list[tuple[str, str]]) -> None:
  w = max(len(k) for k, _ in rows)
  print(f"\n{title}\n" + "-" * (w + 40))
  for k, v in rows:
    print(f"{k:<{w}}  {v}")


def _gib(n: float) -> str:
  return f"{n / GiB:9.2f} GiB"


def _analytic_sizes(cfg: ModelConfig, mesh, tok_chip: int, seq_chip: int, L: int,
                    acc: int) -> None:
  """Rough sizes of the big pieces, to see what dominates the temporaries."""
  p = count_params(cfg)
  tensor = mesh.shape["tensor"]
  shards = mesh.shape["fsdp"] * tensor  # parameters are sharded over fsdp (embed) and tensor
  cbytes = jnp.dtype(cfg.dtype).itemsize
  heads_chip = max(cfg.num_heads / tensor, 1)
  layer_params = (p - 2 * cfg.vocab_size * cfg.d_model) / cfg.num_layers
  _table("Analytic per-chip sizes (per microbatch; approximate)", [
      ("params f32 (sharded)", _gib(4 * p / shards)),
      ("adam mu + nu f32 (sharded)", _gib(8 * p / shards)),
      ("grad accumulator f32 (sharded)", _gib(4 * p / shards if acc > 1 else 0)),
      ("one layer's weights gathered (bf16)", _gib(cbytes * layer_params / tensor)),
      ("saved residual stream, all layers", _gib(cfg.num_layers * tok_chip * cfg.d_model * cbytes)),
      ("logits f32 [tokens, vocab/tensor]", _gib(4 * tok_chip * cfg.vocab_size / tensor)),
      # Splash never forms them; it keeps [heads, L] softmax statistics instead.
      ("attention scores f32, one layer",
       "none (splash)" if cfg.attention == "splash" else _gib(4 * seq_chip * heads_chip * L * L)),
      ("MLP gate+up, one layer", _gib(2 * cbytes * tok_chip * cfg.d_ffn / tensor)),
  ])


def probe_flops(cfg: ModelConfig, seq_len: int) -> float:
  """XLA's FLOP count for forward+backward of ONE sequence with the layers unrolled.

  cost_analysis() of the real step counts each while-loop body once (the layer
  scan and the accumulation scan), so it cannot be compared with the analytic
  count; this probe lowers the same loss without loops (trace only, no compile)
  and includes the remat recompute of the configured policy.
  """
  model = Transformer(dataclasses.replace(cfg, scan_layers=False))
  params = jax.eval_shape(lambda r: model.init(r, jnp.zeros((1, 8), jnp.int32))["params"],
                          jax.random.key(0))
  params = nn.meta.unbox(params)
  batch = {k: jax.ShapeDtypeStruct((1, seq_len), jnp.float32 if k == "weights" else jnp.int32)
           for k in BATCH_KEYS}
  grad = jax.jit(jax.grad(lambda p, b: weighted_nll(p, model, b)[0]))
  ca = grad.lower(params, batch).cost_analysis()
  return float(ca["flops"]) if ca else float("nan")


def compile_train_step(args) -> dict:
  """Lowers and compiles the train step for args.topology. Returns a dict with
  the compiled program (None when the compiler reports out of memory), the
  per-chip memory total (None then too), and what the report prints."""
  hbm, peak = _chip(args.topology)
  if args.hbm_gib:
    hbm = args.hbm_gib * GiB
  t0 = time.perf_counter()
  devices = tpu_devices(args.topology)
  mesh = make_mesh(args.ici, devices=devices)
  config = get_base(args.model)
  if args.remat:
    config.model.remat_policy = args.remat
  if args.attention:
    config.model.attention = args.attention
  cfg = ModelConfig.from_dict(config.model)
  model = Transformer(cfg)
  rules = make_rules(config.mesh.rules)
  tcfg = config.train
  schedule = make_schedule(tcfg, tcfg.num_steps)
  tx = make_optimizer(tcfg, schedule)

  b, L, acc = args.global_batch, args.seq_len, args.grad_accum
  batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  if b % (acc * batch_shards):
    raise ValueError(f"--global_batch={b} must divide into --grad_accum={acc} microbatches "
                     f"over data*fsdp={batch_shards} shards.")
  abstract_state, _ = state_shardings(model, tx, mesh, rules)
  bsh = batch_sharding(mesh, rules, 2)
  dtypes = {"weights": jnp.float32}
  abstract_batch = {k: jax.ShapeDtypeStruct((b, L), dtypes.get(k, jnp.int32), sharding=bsh)
                    for k in BATCH_KEYS}
  step = make_train_step(model, tx, schedule, mesh, rules, acc)
  with mesh_context(mesh, rules):
    lowered = step.jitted.lower(abstract_state, abstract_batch)
  r = dict(cfg=cfg, mesh=tuple(mesh.shape[a] for a in mesh.axis_names), mesh_obj=mesh,
           devices=devices, n=len(devices), hbm=hbm, peak=peak, lowered=lowered,
           t_lower=time.perf_counter() - t0, compiled=None, total=None, error="")
  t1 = time.perf_counter()
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    # The TPU compiler refuses programs that cannot fit; that is the answer here.
    r["error"] = str(e).splitlines()[0][:300]
    return r
  r["t_compile"] = time.perf_counter() - t1
  ma = compiled.memory_analysis()
  r.update(compiled=compiled, memory=ma,
           total=(ma.argument_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
                  + ma.temp_size_in_bytes + ma.generated_code_size_in_bytes))
  return r


def main(argv=None) -> int:
  args = parse_args(argv)
  r = compile_train_step(args)
  cfg, mesh, devices, n, hbm, peak = (r["cfg"], r["mesh_obj"], r["devices"], r["n"], r["hbm"],
                                      r["peak"])
  b, L, acc = args.global_batch, args.seq_len, args.grad_accum
  batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  # --- What is compiled.
  d0 = devices[0]
  seq_chip = b // acc // batch_shards
  _table(f"AOT train step: {args.model} on {args.topology}", [
      ("devices", f"{n} x {d0.device_kind} (compile-only, from libtpu)"),
      ("mesh (data, fsdp, tensor)", str(r["mesh"])),
      ("global batch x seq", f"{b} x {L} = {b * L:,} tokens/step"),
      ("grad accumulation", f"{acc} microbatch(es) of {b // acc} seqs ({seq_chip} seq/chip)"),
      ("remat / attention", f"{cfg.remat_policy} / {cfg.attention}"),
      ("compute / param dtype", f"{cfg.dtype} / {cfg.param_dtype}"),
      ("parameters", f"{count_params(cfg) / 1e9:.3f} B"),
      ("lower time", f"{r['t_lower']:.1f} s"),
  ])
  _analytic_sizes(cfg, mesh, seq_chip * L, seq_chip, L, acc)
  if r["compiled"] is None:
    _table("Per-chip memory", [("compiler", r["error"]), ("HBM per chip", _gib(hbm)),
                               ("FITS", "NO")])
    return 1
  compiled, total, ma = r["compiled"], r["total"], r["memory"]
  print(f"\ncompile time: {r['t_compile']:.1f} s")
  if args.dump_hlo:
    with open(args.dump_hlo, "w") as f:
      f.write(compiled.as_text())

  # --- Memory per chip.
  _table("Per-chip memory (compiled.memory_analysis())", [
      ("arguments (state + batch)", _gib(ma.argument_size_in_bytes)),
      ("outputs", _gib(ma.output_size_in_bytes)),
      ("aliased (donated state)", _gib(ma.alias_size_in_bytes)),
      ("temporaries", _gib(ma.temp_size_in_bytes)),
      ("generated code", _gib(ma.generated_code_size_in_bytes)),
      ("total = args + out - alias + temp + code", _gib(total)),
      ("HBM per chip", _gib(hbm)),
      ("headroom", _gib(hbm - total)),
      ("FITS", "yes" if total <= hbm else "NO"),
  ])

  # --- FLOPs.
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):
    ca = ca[0] if ca else {}
  xla_flops = float(ca.get("flops", float("nan")))
  analytic = flops_per_token(cfg, L) * b * L
  ideal_s = analytic / (n * peak)
  rows = [
      ("XLA cost_analysis() of the step, per chip", f"{xla_flops:.4e}"),
      ("  x chips (loop bodies counted once!)", f"{xla_flops * n:.4e}"),
  ]
  if args.probe_flops:
    t = time.perf_counter()
    probe = probe_flops(cfg, L) * b
    rows += [("XLA unrolled probe, 1 seq x batch", f"{probe:.4e}  (incl. remat recompute; "
                                                   f"{time.perf_counter() - t:.0f} s)"),
             ("  per chip", f"{probe / n:.4e}")]
  rows += [
      ("analytic model FLOPs (flops_per_token x tokens)", f"{analytic:.4e}"),
      ("  per chip", f"{analytic / n:.4e}"),
  ]
  if args.probe_flops:
    rows.append(("XLA probe / analytic", f"{probe / analytic:.3f}"))
  rows += [
      ("bytes accessed per chip (cost_analysis)", f"{float(ca.get('bytes accessed', float('nan'))):.4e}"),
      ("step time at 100% MFU", f"{ideal_s:.2f} s ({peak / 1e12:.0f} TFLOP/s/chip)"),
  ]
  _table("FLOPs per step", rows)
  print("\nNotes: XLA's cost analysis counts a while-loop body once, not once per trip, so\n"
        "with scanned layers and gradient accumulation the compiled step's figure covers\n"
        "one layer of one microbatch plus the embedding/output/optimizer work. The\n"
        "unrolled probe counts every layer; it exceeds the analytic (PaLM-convention)\n"
        "model FLOPs by the remat recompute. MFU uses the analytic model FLOPs.")
  return 0 if total <= hbm else 1


if __name__ == "__main__":
  sys.exit(main())
