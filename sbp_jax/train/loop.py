"""The one train loop: pretraining, synthesizer-tuning, joint training, CPT, SFT.

Everything that differs between those jobs is in the config: the data (and its
loss weights), the schedule, and where the initial parameters come from.
"""

from __future__ import annotations

import logging
import math
import os

import jax

from sbp_jax import fileio
from sbp_jax.data import vocab as vocab_lib
from sbp_jax.data.factory import make_iterator
from sbp_jax.model import ModelConfig, Transformer, flops_per_token
from sbp_jax.parallel import global_batch, make_rules, maybe_initialize_distributed, mesh_from_config
from sbp_jax.train.checkpoint import Checkpointer
from sbp_jax.train.metrics import MetricWriter, Throughput
from sbp_jax.train.optim import make_optimizer, make_schedule
from sbp_jax.train.preemption import stop_on_sigterm
from sbp_jax.train.state import TrainState, init_state, state_shardings
from sbp_jax.train.step import make_eval_step, make_train_step

log = logging.getLogger("sbp_jax")


def evaluate(eval_fn, params, data_cfg, tcfg, seed, mesh, rules) -> dict[str, float]:
  """Token-weighted NLL and perplexity over `train.eval_steps` held-out batches."""
  it = make_iterator(data_cfg, "eval", tcfg.seq_len, tcfg.eval_batch_size or tcfg.global_batch_size,
                     seed)
  nll, tokens = 0.0, 0.0
  for _ in range(tcfg.eval_steps):
    try:
      out = jax.device_get(eval_fn(params, global_batch(next(it), mesh, rules)))
    except StopIteration:
      break
    nll, tokens = nll + float(out["nll_sum"]), tokens + float(out["tokens"])
  loss = nll / max(tokens, 1.0)
  return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}


def _initial_state(config, model, tx, mesh, rules, ckpt, train_iter):
  abstract, _ = state_shardings(model, tx, mesh, rules)
  latest = ckpt.latest_step()
  if latest is not None:
    state, _ = ckpt.restore(latest, abstract, iterator=train_iter)
    log.info("Resumed from step %d of %s", latest, ckpt.manager.directory)
    return state
  state = init_state(model, tx, mesh, rules, jax.random.key(config.seed))
  init_from = config.train.get("init_from", "")
  if init_from:
    src = Checkpointer(init_from, every=1, keep=1, async_save=False)
    step = src.latest_step()
    if step is None:
      raise FileNotFoundError(f"train.init_from={init_from!r} holds no checkpoint; point it at "
                              f"the 'checkpoints' folder of a finished run.")
    params = src.restore_params(step, abstract.params)
    src.close()
    state = TrainState(step=state.step, params=params, opt_state=tx.init(params))
    log.info("Initialised parameters from %s step %d", init_from, step)
  return state


def checkpoint_dir(config, workdir: str) -> str:
  """Where a run keeps its checkpoints: train.checkpoint_dir, else <workdir>/checkpoints."""
  return config.train.get("checkpoint_dir", "") or os.path.join(workdir, "checkpoints")


def train(config, workdir: str) -> dict:
  """Runs (or resumes) training; returns the per-step loss history and evals."""
  maybe_initialize_distributed(config.get("distributed"))
  config = vocab_lib.with_job_tokenizer(config)  # the data reads the job's one tokenizer
  mesh = mesh_from_config(config.mesh)
  rules = make_rules(config.mesh.get("rules"))
  model_cfg = ModelConfig.from_dict(config.model)
  model = Transformer(model_cfg)
  vocab_lib.check_fits(config.data, model_cfg.vocab_size)
  tcfg = config.train
  schedule = make_schedule(tcfg, tcfg.num_steps)
  tx = make_optimizer(tcfg, schedule)
  train_iter = make_iterator(config.data, "train", tcfg.seq_len, tcfg.global_batch_size,
                             config.seed)
  ckpt = Checkpointer(checkpoint_dir(config, workdir), tcfg.checkpoint_every,
                      tcfg.keep_checkpoints, tcfg.get("async_checkpoint", True))
  state = _initial_state(config, model, tx, mesh, rules, ckpt, train_iter)
  step_fn = make_train_step(model, tx, schedule, mesh, rules, tcfg.grad_accum_steps)
  eval_fn = make_eval_step(model, mesh, rules)

  start = int(jax.device_get(state.step))
  writer = MetricWriter(os.path.join(workdir, "tb"), tcfg.num_steps, start)
  tokens_per_step = tcfg.global_batch_size * tcfg.seq_len
  meter = Throughput(flops_per_token(model_cfg, tcfg.seq_len),
                     tcfg.peak_flops_per_device * jax.device_count())
  history = {"loss": {}, "eval": {}}
  pending = []
  step = start
  with stop_on_sigterm() as stop:
    while step < tcfg.num_steps:
      try:
        local = next(train_iter)
      except StopIteration as e:  # e.g. never-repeated synthetic data ran out
        ckpt.save(step, state, train_iter.get_state(), force=True, iterator=train_iter)
        log.warning("Training data ended at step %d (%s); saved and stopping.", step, e)
        break
      batch = global_batch(local, mesh, rules)
      state, metrics = step_fn(state, batch)
      step += 1
      pending.append((step, metrics))
      meter.add(tokens_per_step)
      writer.advance()
      last = step == tcfg.num_steps
      if step % tcfg.log_every == 0 or last:
        for s, m in jax.device_get(pending):
          history["loss"][s] = float(m["loss"])
        m = {k: float(v) for k, v in pending[-1][1].items()}
        pending.clear()
        writer.write(step, {**m, **meter.read()})
        writer.advance(0, loss=m["loss"])
      if tcfg.eval_every and (step % tcfg.eval_every == 0 or last):
        ev = evaluate(eval_fn, state.params, config.data, tcfg, config.seed, mesh, rules)
        history["eval"][step] = ev
        writer.write(step, ev, prefix="eval")
      if step % tcfg.checkpoint_every == 0 or last:
        ckpt.save(step, state, train_iter.get_state(), force=True, iterator=train_iter)
      if stop.should_stop():
        ckpt.save(step, state, train_iter.get_state(), force=True, iterator=train_iter)
        log.warning("SIGTERM: saved step %d and stopping; re-run to resume.", step)
        break
  ckpt.close()
  writer.close()
  if jax.process_index() == 0:
    _append_history(os.path.join(workdir, "history.json"), history)
  history["state"] = state
  return history


def _append_history(path: str, history: dict) -> None:
  """Merges this run's metrics into history.json (a resumed run adds to it)."""
  old = fileio.read_json(path) if fileio.exists(path) else {"loss": {}, "eval": {}}
  for key in ("loss", "eval"):
    old[key].update({str(k): v for k, v in history[key].items()})
  fileio.write_json(path, old)


def run(config, workdir: str) -> None:
  train(config, workdir)
