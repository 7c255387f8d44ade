"""The one train loop: pretraining, synthesizer-tuning, joint training, CPT, SFT.

Everything that differs between those jobs is in the config: the data (and its
loss weights), the schedule, and where the initial parameters come from.
"""

from __future__ import annotations

import logging
import math
import os

import jax
import numpy as np

from sbp_jax import fileio, runs, validate
from sbp_jax.data import vocab as vocab_lib
from sbp_jax.data.factory import make_iterator
from sbp_jax.errors import InputError
from sbp_jax.model import ModelConfig, Transformer, flops_per_token
from sbp_jax.parallel import global_batch, make_rules, maybe_initialize_distributed, mesh_from_config
from sbp_jax.train.checkpoint import Checkpointer, check_checkpoint
from sbp_jax.train.metrics import MetricWriter, Throughput
from sbp_jax.train.optim import make_optimizer, make_schedule
from sbp_jax.train.preemption import stop_on_sigterm
from sbp_jax.train.state import TrainState, init_state, state_shardings
from sbp_jax.train.step import make_eval_step, make_train_step

log = logging.getLogger("sbp_jax")

# What a train run's checkpoints and history depend on (runs.IGNORED drops cadence fields).
IDENTITY_KEYS = ("model", "data", "train", "seed")
OUTPUTS = ("checkpoints", "history.json", "tb")


class NonFiniteLoss(InputError):
  """The loss or gradient norm became NaN/inf; the run stopped before saving it."""


def eval_batches(data_cfg, tcfg, seed) -> list:
  """The `train.eval_steps` held-out host batches, read once (fewer if the split is shorter).

  The eval split is read in a fixed order, so every evaluation sees the same batches; a run
  keeps them in host memory instead of rebuilding the input pipeline (seconds with seqio)
  at each of its evaluations.
  """
  it = make_iterator(data_cfg, "eval", tcfg.seq_len, tcfg.eval_batch_size or tcfg.global_batch_size,
                     seed)
  out = []
  for _ in range(tcfg.eval_steps):
    try:
      out.append(next(it))
    except StopIteration:
      break
  return out


def evaluate(eval_fn, params, batches, mesh, rules) -> dict[str, float]:
  """Token-weighted NLL and perplexity over held-out host batches (see `eval_batches`)."""
  nll, tokens = 0.0, 0.0
  for local in batches:
    out = jax.device_get(eval_fn(params, global_batch(local, mesh, rules)))
    nll, tokens = nll + float(out["nll_sum"]), tokens + float(out["tokens"])
  loss = nll / max(tokens, 1.0)
  return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}


def _initial_state(config, model, tx, mesh, rules, ckpt, train_iter):
  abstract, _ = state_shardings(model, tx, mesh, rules)
  restored = ckpt.restore_latest(abstract, iterator=train_iter)
  if restored is not None:
    log.info("Resumed from step %d of %s", restored[0], ckpt.manager.directory)
    return restored[1]
  state = init_state(model, tx, mesh, rules, jax.random.key(config.seed))
  init_from = config.train.get("init_from", "")
  if init_from:
    src = Checkpointer(init_from, every=1, keep=1, async_save=False)
    step = src.latest_step()
    params = src.restore_params(step, abstract.params)
    src.close()
    state = TrainState(step=state.step, params=params, opt_state=tx.init(params))
    log.info("Initialised parameters from %s step %d", init_from, step)
  return state


def checkpoint_dir(config, workdir: str) -> str:
  """Where a run keeps its checkpoints: train.checkpoint_dir, else <workdir>/checkpoints."""
  return config.train.get("checkpoint_dir", "") or os.path.join(workdir, "checkpoints")


def check_eval_split(config) -> None:
  """With evals on, the eval split must yield at least one weighted token."""
  t = config.train
  batch, why = None, "is empty"
  try:
    it = make_iterator(config.data, "eval", t.seq_len, t.eval_batch_size or t.global_batch_size,
                       config.seed)
    batch = next(it)
  except StopIteration:
    pass
  except ValueError as e:  # e.g. too little text for one window
    why = f"is unusable ({e})"
  if batch is None or not float(np.sum(batch["weights"])):
    raise InputError(f"train.eval_every={t.eval_every} but the eval split of data "
                     f"(kind {config.data.get('kind')!r}) {why}; give data an eval split "
                     "(data.eval, data.eval_fraction) or set train.eval_every=0.")


def _check_finite(pending, ckpt) -> None:
  """Raises NonFiniteLoss at the first pending step whose loss or grad norm is not finite."""
  for s, m in pending:
    loss, gnorm = float(m["loss"]), float(m["grad_norm"])
    if not (math.isfinite(loss) and math.isfinite(gnorm)):
      last = ckpt.latest_step()
      raise NonFiniteLoss(
          f"training stopped at step {s}: loss={loss}, grad_norm={gnorm}. Nothing from that "
          f"step was saved; the last finite checkpoint is "
          f"{'step %d' % last if last is not None else 'none'} in {ckpt.manager.directory}. "
          f"Lower train.lr (the step's rate was {float(m.get('lr', math.nan)):.3g}), raise "
          "train.warmup_frac or check the data, then re-run with --overwrite or a new "
          "--workdir.")


def train(config, workdir: str) -> dict:
  """Runs (or resumes) training; returns the per-step loss history and evals."""
  maybe_initialize_distributed(config.get("distributed"))
  config = vocab_lib.with_job_tokenizer(config)  # the data reads the job's one tokenizer
  mesh = mesh_from_config(config.mesh)
  rules = make_rules(config.mesh.get("rules"))
  validate.train_config(config, mesh, rules)
  if config.train.get("init_from"):
    check_checkpoint("train.init_from", config.train.init_from)
  if config.train.eval_every:
    check_eval_split(config)
  model_cfg = ModelConfig.from_dict(config.model)
  model = Transformer(model_cfg)
  vocab_lib.check_fits(config.data, model_cfg.vocab_size)
  tcfg = config.train
  schedule = make_schedule(tcfg, tcfg.num_steps)
  tx = make_optimizer(tcfg, schedule)
  train_iter = make_iterator(config.data, "train", tcfg.seq_len, tcfg.global_batch_size,
                             config.seed)  # bad data files fail here, before the claim
  runs.claim(workdir, "train", config, IDENTITY_KEYS, OUTPUTS)
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

  def flush():  # host-side check of every step since the last one, before logging or saving
    done = jax.device_get(pending)
    pending.clear()
    try:
      _check_finite(done, ckpt)
    except NonFiniteLoss:
      for s, m in done:
        if not (math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"]))):
          break
        history["loss"][s] = float(m["loss"])
      ckpt.close()
      writer.close()
      if jax.process_index() == 0:
        _append_history(os.path.join(workdir, "history.json"), history)
      raise
    for s, m in done:
      history["loss"][s] = float(m["loss"])
    return done

  def save():  # the metrics go with each checkpoint, so a killed run loses neither
    flush()
    ckpt.save(step, state, train_iter.get_state(), force=True, iterator=train_iter)
    if jax.process_index() == 0:
      _append_history(os.path.join(workdir, "history.json"), history)

  # train.run_steps > 0: stop (with a checkpoint) after that many steps in this invocation,
  # e.g. to fit a scheduler's time slice; the same command later resumes to num_steps.
  run_until = tcfg.num_steps
  if tcfg.get("run_steps"):
    run_until = min(run_until, step + int(tcfg.run_steps))
  held_out = None  # read at the first evaluation, then reused
  with stop_on_sigterm() as stop:
    while step < run_until:
      try:
        local = next(train_iter)
      except StopIteration as e:  # e.g. never-repeated synthetic data ran out
        save()
        log.warning("Training data ended at step %d (%s); saved and stopping.", step, e)
        break
      batch = global_batch(local, mesh, rules)
      state, metrics = step_fn(state, batch)
      step += 1
      pending.append((step, metrics))
      meter.add(tokens_per_step)
      writer.advance()
      last = step == run_until
      if step % tcfg.log_every == 0 or last:
        m = {k: float(v) for k, v in flush()[-1][1].items()}
        writer.write(step, {**m, **meter.read()})
        writer.advance(0, loss=m["loss"])
      if tcfg.eval_every and (step % tcfg.eval_every == 0 or last):
        if held_out is None:
          held_out = eval_batches(config.data, tcfg, config.seed)
        ev = evaluate(eval_fn, state.params, held_out, mesh, rules)
        history["eval"][step] = ev
        writer.write(step, ev, prefix="eval")
      if step % tcfg.checkpoint_every == 0 or last:
        save()
      if stop.should_stop():
        save()
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
