"""Is the seqio input pipeline fast enough to feed the train step on this machine?

  .venv/bin/python benchmarks/data_throughput.py [--config=configs/demo_corpus_train.py]
      [--batches=100] [--steps=20] [--resume_at=100,400] [--parts=pipeline,resume,train]

Measures, each on its own (so they do not share the CPU):
  1. the pipeline: host batches/s and tokens/s handed out by the config's
     train iterator (after the first batch, which builds the tf.data graph);
     "real" tokens exclude packing padding;
  2. the train step on the same config: tokens/s of the jitted step (after
     compilation), built as sbp_jax.train.loop builds it;
  3. resume at each batch K of --resume_at: seconds from a freshly built
     iterator to its first batch after K, by skip (replays K batches inside tf.data) and by
     the iterator checkpoint (data.checkpoint_iterator; restores the saved
     tf.data state), plus that checkpoint's save time and size on disk.
Prints the ratio pipeline / train step; above 1 the pipeline is not the
bottleneck (in training it runs in tf.data threads alongside the step).
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from sbp_jax.data.factory import make_iterator  # noqa: E402
from sbp_jax.model import ModelConfig, Transformer, count_params  # noqa: E402
from sbp_jax.parallel import global_batch, make_rules, mesh_from_config  # noqa: E402
from sbp_jax.train.optim import make_optimizer, make_schedule  # noqa: E402
from sbp_jax.train.state import init_state  # noqa: E402
from sbp_jax.train.step import make_train_step  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo_corpus_train.py",
                                          "ml_collections config file with a data section.")
_BATCHES = flags.DEFINE_integer("batches", 100, "timed pipeline batches")
_STEPS = flags.DEFINE_integer("steps", 20, "timed train steps (after 3 warm-up steps)")
_RESUME_AT = flags.DEFINE_list("resume_at", ["100", "400"],
                               "batch indices to restore the iterator at")
_PARTS = flags.DEFINE_list("parts", ["pipeline", "resume", "train"], "what to measure")


def _table(title: str, rows: list[tuple[str, str]]) -> None:
  w = max(len(k) for k, _ in rows)
  print(f"\n{title}\n" + "-" * (w + 40))
  for k, v in rows:
    print(f"{k:<{w}}  {v}")


def time_pipeline(config, n: int) -> dict:
  tcfg = config.train
  t = time.perf_counter()
  it = make_iterator(config.data, "train", tcfg.seq_len, tcfg.global_batch_size, config.seed)
  next(it)
  first = time.perf_counter() - t
  real = 0
  t = time.perf_counter()
  for _ in range(n):
    real += int((next(it)["segment_ids"] > 0).sum())
  dt = time.perf_counter() - t
  slots = n * tcfg.global_batch_size * tcfg.seq_len // jax.process_count()
  return {"first": first, "batches_s": n / dt, "slot_tps": slots / dt, "real_tps": real / dt,
          "packing": real / slots}


def time_resume(config, at: int) -> dict:
  tcfg = config.train
  make = lambda: make_iterator(config.data, "train", tcfg.seq_len, tcfg.global_batch_size,
                               config.seed)
  it = make()
  for _ in range(at):
    next(it)
  state = it.get_state()
  with tempfile.TemporaryDirectory() as d:
    prefix = os.path.join(d, "host-0-of-1")
    t = time.perf_counter()
    saved = it.save_iterator(prefix)
    save_s = time.perf_counter() - t
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    want = next(it)["targets"]
    out = {"save_s": save_s, "bytes": size}
    del it  # its prefetch threads would compete with the timed iterators
    gc.collect()
    for how in ("skip", "checkpoint"):
      fresh = make()  # building the pipeline costs the same either way: not timed
      t = time.perf_counter()
      fresh.set_state(state)
      if how == "checkpoint" and not (saved and fresh.restore_iterator(prefix)):
        raise RuntimeError("the iterator checkpoint was not used; see the warning above")
      got = next(fresh)["targets"]
      out[how] = time.perf_counter() - t
      del fresh
      gc.collect()
      if not (got == want).all():
        raise RuntimeError(f"resume by {how} at batch {at} did not continue the stream")
  return out


def time_train_step(config, n: int) -> dict:
  tcfg = config.train
  mesh = mesh_from_config(config.mesh)
  rules = make_rules(config.mesh.get("rules"))
  cfg = ModelConfig.from_dict(config.model)
  model = Transformer(cfg)
  schedule = make_schedule(tcfg, tcfg.num_steps)
  tx = make_optimizer(tcfg, schedule)
  state = init_state(model, tx, mesh, rules, jax.random.key(config.seed))
  step = make_train_step(model, tx, schedule, mesh, rules, tcfg.grad_accum_steps)
  it = make_iterator(config.data, "train", tcfg.seq_len, tcfg.global_batch_size, config.seed)
  batches = [global_batch(next(it), mesh, rules) for _ in range(3 + n)]
  for b in batches[:3]:
    state, m = step(state, b)
  jax.block_until_ready(m)
  times = []
  for b in batches[3:]:
    t = time.perf_counter()
    state, m = step(state, b)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t)
  mean = statistics.mean(times)
  return {"params": count_params(cfg), "step_ms": mean * 1e3, "median_ms":
          statistics.median(times) * 1e3,
          "tps": tcfg.global_batch_size * tcfg.seq_len / mean / jax.process_count()}


def main(argv):
  del argv
  config = _CONFIG.value
  tcfg = config.train
  parts = set(_PARTS.value)
  rows = [("machine", f"{jax.device_count()} x {jax.devices()[0].device_kind}, "
                      f"{os.cpu_count()} host cores, load avg {os.getloadavg()[0]:.1f}"),
          ("data", f"kind={config.data.kind}, pack={config.data.get('pack', True)}, batch x seq "
                   f"= {tcfg.global_batch_size} x {tcfg.seq_len}, shuffle_buffer="
                   f"{config.data.get('shuffle_buffer', 10_000)}")]
  if "pipeline" in parts:
    pipe = time_pipeline(config, _BATCHES.value)
    rows += [
        ("pipeline: build + first batch", f"{pipe['first']:.2f} s"),
        ("pipeline: batches/s", f"{pipe['batches_s']:.1f}"),
        ("pipeline: tokens/s (row slots)", f"{pipe['slot_tps']:,.0f}"),
        ("pipeline: tokens/s (real, no padding)", f"{pipe['real_tps']:,.0f}"),
        ("packing efficiency", f"{100 * pipe['packing']:.1f} % of slots hold tokens")]
  if "resume" in parts:
    for at in map(int, _RESUME_AT.value):
      r = time_resume(config, at)
      rows += [(f"resume at batch {at}: skip / iterator checkpoint",
                f"{r['skip']:.2f} s ({at / r['skip']:.0f} batches/s) / {r['checkpoint']:.2f} s "
                f"(save {r['save_s'] * 1e3:.0f} ms, {r['bytes'] / 2**20:.1f} MiB)")]
  if "train" in parts:
    train = time_train_step(config, _STEPS.value)
    rows += [
        ("train step: model", f"{train['params']:,} params"),
        ("train step: mean / median", f"{train['step_ms']:.1f} / {train['median_ms']:.1f} ms"),
        ("train step: tokens/s", f"{train['tps']:,.0f}")]
    if "pipeline" in parts:
      ratio = pipe["slot_tps"] / train["tps"]
      rows += [("ratio pipeline / train step",
                f"{ratio:.1f}x ({'not the bottleneck' if ratio > 1 else 'BOTTLENECK'})")]
  _table(f"Input pipeline vs train step: {flags.FLAGS['config'].config_filename}", rows)


if __name__ == "__main__":
  app.run(main)
