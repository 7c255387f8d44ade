"""Times the compiled train step on the local devices (CPU here) and reports MFU.

  .venv/bin/python benchmarks/train_step.py --config=configs/tiny_train.py [--steps=20]
      [--config.train.global_batch_size=32 ...]

Builds the same state, sharding and jitted step as `sbp_jax.train.loop.train`,
feeds batches from the config's data iterator (made before timing, so only the
step is measured), excludes compilation and warm-up steps, and prints tokens/s
and the MFU estimate (model FLOPs incl. attention / peak). Besides the config's
nominal peak (`train.peak_flops_per_device`) it measures what this machine
actually reaches on a large float32 matmul, so the MFU has a meaningful scale.

--compare_torch also times a transformers model of the same shape (Qwen3 when
model.qk_norm, else Llama) on the same batches in the same process: forward,
token-weighted cross-entropy, backward, gradient clipping and torch AdamW, on
as many threads as this process may use. Its attention is plain causal over
each row (transformers has no packed-segment mask here); the FLOPs are the same.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from sbp_jax.data.factory import make_iterator  # noqa: E402
from sbp_jax.model import ModelConfig, Transformer, count_params, flops_per_token  # noqa: E402
from sbp_jax.parallel import global_batch, make_rules, mesh_from_config  # noqa: E402
from sbp_jax.train.optim import make_optimizer, make_schedule  # noqa: E402
from sbp_jax.train.state import init_state  # noqa: E402
from sbp_jax.train.step import make_train_step  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/tiny_train.py",
                                          "ml_collections config file.")
_STEPS = flags.DEFINE_integer("steps", 20, "timed steps (after warm-up)")
_WARMUP = flags.DEFINE_integer("warmup", 3, "untimed steps, the first of which compiles")
_COMPARE_TORCH = flags.DEFINE_bool("compare_torch", False, "also time transformers on the "
                                   "same shape and batches, and print the ratio")
_MATMUL_N = flags.DEFINE_integer("matmul_n", 2048, "size of the square f32 matmul used to "
                                 "measure this machine's peak")


def _table(title: str, rows: list[tuple[str, str]]) -> None:
  w = max(len(k) for k, _ in rows)
  print(f"\n{title}\n" + "-" * (w + 36))
  for k, v in rows:
    print(f"{k:<{w}}  {v}")


def measured_matmul_flops(n: int, repeats: int = 10) -> float:
  """Best-of-`repeats` FLOP/s of an [n, n] x [n, n] float32 matmul on the default device
  (spread over all local devices' cores by XLA's own threading on CPU)."""
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), jnp.float32)
  b = jax.random.normal(kb, (n, n), jnp.float32)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2.0 * n ** 3 / best


def torch_step_times(cfg: ModelConfig, tcfg, batches: list[dict], n_warm: int) -> list[float]:
  """Seconds per transformers train step on `batches` (numpy), after `n_warm` untimed ones."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(len(os.sched_getaffinity(0)))
  shape = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ffn,
               num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
               num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.resolved_head_dim,
               max_position_embeddings=cfg.max_seq_len, rope_theta=cfg.rope_theta,
               rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
               attention_bias=cfg.qkv_bias)
  family = ((transformers.Qwen3Config, transformers.Qwen3ForCausalLM) if cfg.qk_norm else
            (transformers.LlamaConfig, transformers.LlamaForCausalLM))
  torch.manual_seed(0)
  model = family[1](family[0](**shape, attn_implementation="sdpa")).float().train()
  opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, betas=(tcfg.b1, tcfg.b2),
                          eps=tcfg.eps, weight_decay=tcfg.weight_decay)
  autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")

  def step(b):
    inputs, targets = torch.from_numpy(b["inputs"]).long(), torch.from_numpy(b["targets"]).long()
    weights = torch.from_numpy(b["weights"]).float()
    with autocast:
      logits = model(input_ids=inputs, position_ids=torch.from_numpy(b["positions"]).long()).logits
    nll = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                            reduction="none")
    loss = (nll * weights.flatten()).sum() / weights.sum().clamp(min=1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if tcfg.clip_norm:
      torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.clip_norm)
    opt.step()

  times = []
  for i, b in enumerate(batches):
    t = time.perf_counter()
    step(b)
    if i >= n_warm:
      times.append(time.perf_counter() - t)
  return times


def main(argv):
  del argv
  config = _CONFIG.value
  tcfg = config.train
  mesh = mesh_from_config(config.mesh)
  rules = make_rules(config.mesh.get("rules"))
  cfg = ModelConfig.from_dict(config.model)
  model = Transformer(cfg)
  schedule = make_schedule(tcfg, tcfg.num_steps)
  tx = make_optimizer(tcfg, schedule)
  state = init_state(model, tx, mesh, rules, jax.random.key(config.seed))
  step = make_train_step(model, tx, schedule, mesh, rules, tcfg.grad_accum_steps)

  n_warm, n_steps = _WARMUP.value, _STEPS.value
  it = make_iterator(config.data, "train", tcfg.seq_len, tcfg.global_batch_size, config.seed)
  local_batches = [next(it) for _ in range(n_warm + n_steps)]
  batches = [global_batch(b, mesh, rules) for b in local_batches]

  t = time.perf_counter()
  for batch in batches[:n_warm]:
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t_warm = time.perf_counter() - t

  times = []
  for batch in batches[n_warm:]:
    t = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t)
  loss = float(metrics["loss"])

  tokens = tcfg.global_batch_size * tcfg.seq_len
  fpt = flops_per_token(cfg, tcfg.seq_len)
  mean_s, med_s = statistics.mean(times), statistics.median(times)
  tps = tokens / mean_s
  achieved = tps * fpt
  n_dev = jax.device_count()
  nominal = tcfg.peak_flops_per_device * n_dev
  measured = measured_matmul_flops(_MATMUL_N.value)

  _table(f"Train step benchmark: {flags.FLAGS['config'].config_filename}", [
      ("devices", f"{n_dev} x {jax.devices()[0].device_kind} ({jax.default_backend()}), "
                  f"{os.cpu_count()} host cores"),
      ("mesh (data, fsdp, tensor)", str(tuple(mesh.shape[a] for a in mesh.axis_names))),
      ("model", f"{count_params(cfg):,} params, {cfg.num_layers} layers, d={cfg.d_model}, "
                f"{cfg.dtype} compute, remat={cfg.remat_policy}"),
      ("batch x seq", f"{tcfg.global_batch_size} x {tcfg.seq_len} = {tokens:,} tokens/step, "
                      f"grad_accum={tcfg.grad_accum_steps}"),
      ("compile + warm-up", f"{n_warm} steps in {t_warm:.2f} s (not timed)"),
      ("timed steps", f"{n_steps}, last loss {loss:.4f}"),
      ("step time mean / median / min", f"{mean_s * 1e3:.2f} / {med_s * 1e3:.2f} / "
                                        f"{min(times) * 1e3:.2f} ms"),
      ("tokens/s", f"{tps:,.0f}"),
      ("model FLOPs/token (incl. attention)", f"{fpt:,.0f}"),
      ("achieved model FLOP/s", f"{achieved / 1e9:.2f} GFLOP/s"),
  ])
  _table("MFU", [
      ("configured peak (train.peak_flops_per_device x devices)", f"{nominal / 1e9:.1f} GFLOP/s"),
      ("MFU vs configured peak", f"{100 * achieved / nominal:.2f} %"),
      (f"measured peak ({_MATMUL_N.value}^2 f32 jnp.dot, best of 10)",
       f"{measured / 1e9:.1f} GFLOP/s"),
      ("MFU vs measured matmul peak", f"{100 * achieved / measured:.2f} %"),
  ])
  if _COMPARE_TORCH.value:
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    t_times = torch_step_times(cfg, tcfg, local_batches, n_warm)
    t_tps = tokens / statistics.mean(t_times)
    _table("transformers, same shape and batches, same process", [
        ("versions", f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
                     f"transformers {transformers.__version__}"),
        ("step time mean / median / min", f"{statistics.mean(t_times) * 1e3:.2f} / "
                                          f"{statistics.median(t_times) * 1e3:.2f} / "
                                          f"{min(t_times) * 1e3:.2f} ms"),
        ("tokens/s", f"{t_tps:,.0f}"),
        ("MFU vs measured matmul peak", f"{100 * t_tps * fpt / measured:.2f} %"),
        ("ours / transformers (tokens/s)", f"{tps / t_tps:.2f}x"),
    ])


if __name__ == "__main__":
  app.run(main)
