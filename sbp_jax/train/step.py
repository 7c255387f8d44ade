"""Loss, train step (with gradient accumulation) and eval step, jitted with shardings.

Batches are dicts of [batch, length] arrays:
  inputs       int32  tokens fed to the model
  targets      int32  next tokens to predict
  weights      float32 per-token loss weight (0 on padding, prompts, d1, ...)
  segment_ids  int32  document id within a packed row, 0 = padding
  positions    int32  position within the document
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from sbp_jax.model import Transformer
from sbp_jax.parallel import batch_sharding, mesh_context, replicated
from sbp_jax.train.state import TrainState, state_shardings

BATCH_KEYS = ("inputs", "targets", "weights", "segment_ids", "positions")


def weighted_nll(params, model: Transformer, batch) -> tuple[jax.Array, jax.Array]:
  """(sum of weighted token NLL, sum of weights), both float32."""
  logits = model.apply({"params": params}, batch["inputs"], batch["positions"],
                       batch["segment_ids"])["logits"]
  nll = optax.losses.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  w = batch["weights"].astype(jnp.float32)
  return jnp.sum(nll * w), jnp.sum(w)


def _microbatches(batch, n: int, mesh: Mesh, rules):
  """[n*m, L] -> [n, m, L], keeping each microbatch sharded over the batch axes."""
  sh = batch_sharding(mesh, rules, 2)
  spec = jax.sharding.PartitionSpec(None, *sh.spec)

  def split(x):
    x = x.reshape((n, x.shape[0] // n) + x.shape[1:])
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
  return jax.tree.map(split, batch)


def _loss_and_grad(params, model: Transformer, batch):
  """((weighted NLL sum, weight sum), grads of the NLL sum)."""
  return jax.value_and_grad(lambda p: weighted_nll(p, model, batch), has_aux=True)(params)


def make_train_step(model: Transformer, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, mesh: Mesh, rules,
                    grad_accum_steps: int = 1) -> Callable:
  """Returns `step(state, batch) -> (state, metrics)`, jitted with the state
  donated. The loss is the token-weighted mean over the whole global batch, so
  accumulating over microbatches gives the same update as one large batch."""

  def step(state: TrainState, batch):
    if grad_accum_steps == 1:
      (loss_sum, w_sum), grads = _loss_and_grad(state.params, model, batch)
    else:
      def accumulate(carry, micro):
        g_acc, l_acc, w_acc = carry
        (l, w), g = _loss_and_grad(state.params, model, micro)
        return (jax.tree.map(jnp.add, g_acc, g), l_acc + l, w_acc + w), None

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, loss_sum, w_sum), _ = jax.lax.scan(
          accumulate, (zeros, jnp.float32(0), jnp.float32(0)),
          _microbatches(batch, grad_accum_steps, mesh, rules))
    denom = jnp.maximum(w_sum, 1.0)
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss_sum / denom, "tokens": w_sum,
               "grad_norm": optax.global_norm(grads), "lr": schedule(state.step)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  _, shardings = state_shardings(model, tx, mesh, rules)
  jitted = jax.jit(step, in_shardings=(shardings, batch_sharding(mesh, rules, 2)),
                   out_shardings=(shardings, replicated(mesh)), donate_argnums=(0,))

  def run(state, batch):
    with mesh_context(mesh, rules):
      return jitted(state, batch)
  run.jitted = jitted
  return run


def make_eval_step(model: Transformer, mesh: Mesh, rules) -> Callable:
  """Returns `eval(params, batch) -> {"nll_sum", "tokens"}` (jitted once)."""

  def ev(params, batch):
    l, w = weighted_nll(params, model, batch)
    return {"nll_sum": l, "tokens": w}

  jitted = jax.jit(ev, out_shardings=replicated(mesh))

  def run(params, batch):
    with mesh_context(mesh, rules):
      return jitted(params, batch)
  return run
