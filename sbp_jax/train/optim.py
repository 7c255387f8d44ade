"""Learning-rate schedules and the AdamW optimizer (optax)."""

from __future__ import annotations

import jax
import optax


def make_schedule(cfg, num_steps: int) -> optax.Schedule:
  """`cosine`: linear warmup over warmup_frac of the steps to `lr`, cosine to `end_lr`.
  `constant`: linear warmup (if any) then flat at `lr`."""
  warmup = int(round(cfg.warmup_frac * num_steps))
  if cfg.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.lr, warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1), end_value=cfg.end_lr)
  if cfg.schedule == "constant":
    if warmup == 0:
      return optax.constant_schedule(cfg.lr)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, cfg.lr, warmup), optax.constant_schedule(cfg.lr)], [warmup])
  raise ValueError(f"train.schedule={cfg.schedule!r}; choose 'cosine' or 'constant'.")


def decay_mask(params):
  """Weight decay on matrices and embeddings only: not on norm scales or biases."""
  def keep(path, _):
    names = [getattr(k, "key", str(k)) for k in path]
    return not any("norm" in n for n in names) and names[-1] != "bias"
  return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg, schedule: optax.Schedule) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm else optax.identity(),
      optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                  weight_decay=cfg.weight_decay, mask=decay_mask),
  )
