"""Placing a model on a mesh: parameters on their logical shardings, batches over the
batch axes, and the shape buckets that bound how often a jitted function compiles.

Every consumer of a trained model (sampler, scorer, embedder, the jobs that load
checkpoints) places it through here, so they agree on layouts and padding.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
from jax.sharding import Mesh

from sbp_jax.model import ModelConfig, Transformer, param_logical_specs


def param_shardings(cfg: ModelConfig, mesh: Mesh, rules):
  """NamedShardings of the model's parameter tree (from its logical axis names)."""
  return nn.logical_to_mesh_sharding(param_logical_specs(Transformer(cfg)), mesh, rules)


def place_params(params, cfg: ModelConfig, mesh: Mesh, rules):
  """Params (host or device arrays) moved onto their shardings over `mesh`."""
  return jax.device_put(params, param_shardings(cfg, mesh, rules))


def batch_shards(mesh: Mesh, rules) -> int:
  """How many ways the batch axis is split (rows must come in multiples of this)."""
  spec = nn.logical_to_mesh_axes(("activation_batch",), rules)[0]
  axes = () if spec is None else (spec if isinstance(spec, tuple) else (spec,))
  return math.prod(mesh.shape[a] for a in axes)


def round_up(n: int, multiple: int) -> int:
  """The smallest multiple of `multiple` that is >= n."""
  return -(-n // multiple) * multiple


def bucket(n: int, minimum: int = 16) -> int:
  """The length bucket (next power of two, at least `minimum`) holding n."""
  return max(minimum, 1 << max(0, math.ceil(math.log2(max(n, 1)))))
