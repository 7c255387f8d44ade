"""Checks of config values that run before any compute; each failure names the key,
the value and the fix (InputError)."""

from __future__ import annotations

import math

from sbp_jax.errors import InputError


def positive(key: str, value, allow_zero: bool = False) -> int:
  """`value` as an int > 0 (>= 0 with allow_zero)."""
  try:
    v = int(value)
    ok = v == value and (v >= 0 if allow_zero else v > 0)
  except (TypeError, ValueError, OverflowError):
    ok = False
  if not ok:
    raise InputError(f"{key}={value!r} must be an integer {'>= 0' if allow_zero else '> 0'}; "
                     f"set --config.{key} to {'0 or more' if allow_zero else 'at least 1'}.")
  return v


def finite_number(key: str, value, minimum: float | None = None) -> float:
  try:
    v = float(value)
  except (TypeError, ValueError):
    v = math.nan
  if not math.isfinite(v) or (minimum is not None and v < minimum):
    bound = f" and >= {minimum}" if minimum is not None else ""
    raise InputError(f"{key}={value!r} must be a finite number{bound}; set --config.{key}.")
  return v


def batch_shards(mesh, rules) -> int:
  """How many ways a batch is split over the mesh (the axes of 'activation_batch')."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  spec = nn.logical_to_mesh_axes(("activation_batch",), rules)[0]
  axes = () if spec is None else (spec if isinstance(spec, tuple) else (spec,))
  return math.prod(mesh.shape[a] for a in axes)


def divisible_batch(key: str, batch: int, accum_key: str, accum: int, shards: int) -> None:
  """`batch` splits into `accum` microbatches, each over `shards` devices."""
  if batch % accum:
    raise InputError(f"{key}={batch} is not divisible by {accum_key}={accum}; choose a batch "
                     f"size that is a multiple of {accum} (e.g. {accum * max(1, batch // accum)}) "
                     f"or another {accum_key}.")
  if (batch // accum) % shards:
    raise InputError(f"{key}={batch} / {accum_key}={accum} = {batch // accum} rows per "
                     f"microbatch do not split over the mesh's {shards} batch shards; use a "
                     f"multiple of {shards * accum} or a mesh (mesh.ici) with fewer data/fsdp "
                     "devices.")


def train_config(config, mesh=None, rules=None, section: str = "train") -> None:
  """The numbers a train job depends on (batch, lengths, intervals, learning rate)."""
  t, m = config[section], config.model
  batch = positive(f"{section}.global_batch_size", t.global_batch_size)
  accum = positive(f"{section}.grad_accum_steps", t.get("grad_accum_steps", 1))
  seq_len = positive(f"{section}.seq_len", t.seq_len)
  positive(f"{section}.num_steps", t.num_steps)
  positive(f"{section}.log_every", t.log_every)
  positive(f"{section}.checkpoint_every", t.checkpoint_every)
  positive(f"{section}.keep_checkpoints", t.keep_checkpoints)
  positive(f"{section}.eval_every", t.get("eval_every", 0), allow_zero=True)
  if t.get("eval_every", 0):
    positive(f"{section}.eval_steps", t.eval_steps)
    positive(f"{section}.eval_batch_size", t.get("eval_batch_size", 0), allow_zero=True)
  finite_number(f"{section}.lr", t.lr, minimum=0)
  for k in ("end_lr", "weight_decay", "clip_norm", "b1", "b2", "eps", "warmup_frac"):
    if k in t:
      finite_number(f"{section}.{k}", t[k], minimum=0)
  max_len = positive("model.max_seq_len", m.max_seq_len)
  if seq_len > max_len:
    raise InputError(f"{section}.seq_len={seq_len} exceeds model.max_seq_len={max_len}; lower "
                     f"{section}.seq_len or raise model.max_seq_len.")
  if mesh is not None:
    shards = batch_shards(mesh, rules)
    divisible_batch(f"{section}.global_batch_size", batch, f"{section}.grad_accum_steps", accum,
                    shards)
    if t.get("eval_every", 0) and t.get("eval_batch_size", 0):
      divisible_batch(f"{section}.eval_batch_size", int(t.eval_batch_size), "1", 1, shards)


def context_error(key: str, prompt_tokens: int, new_tokens: int, context: int,
                  fix: str) -> InputError:
  return InputError(f"{key}: a prompt of {prompt_tokens} tokens plus {new_tokens} new tokens "
                    f"exceeds the model's context of {context} (model.max_seq_len); {fix}")


def context_fits(key: str, prompt_tokens: int, new_tokens: int, context: int,
                 fix: str) -> None:
  if prompt_tokens + new_tokens > context:
    raise context_error(key, prompt_tokens, new_tokens, context, fix)
