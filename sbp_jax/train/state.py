"""Train state, its sharding over the mesh, and sharded initialisation."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sbp_jax.model import Transformer, boxed_params
from sbp_jax.parallel import mesh_context


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def state_shardings(model: Transformer, tx: optax.GradientTransformation, mesh: Mesh, rules):
  """(abstract TrainState of ShapeDtypeStructs, TrainState of NamedShardings)."""
  boxed = jax.eval_shape(lambda r: boxed_params(model, r), jax.random.key(0))
  params = nn.meta.unbox(boxed)
  param_sh = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
  opt_state = jax.eval_shape(tx.init, params)
  repl = NamedSharding(mesh, P())
  # Optimizer moments follow their parameter's sharding; counters are replicated.
  opt_sh = optax.tree_map_params(tx, lambda _, s: s, opt_state, param_sh,
                                 transform_non_params=lambda _: repl,
                                 is_leaf=lambda x: isinstance(x, NamedSharding))
  abstract = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params,
                        opt_state=opt_state)
  shardings = TrainState(step=repl, params=param_sh, opt_state=opt_sh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  return abstract, shardings


def init_state(model: Transformer, tx: optax.GradientTransformation, mesh: Mesh, rules,
               rng) -> TrainState:
  """Initialises directly into the sharded layout (no full copy on one device)."""
  _, shardings = state_shardings(model, tx, mesh, rules)

  def init(rng):
    params = nn.meta.unbox(boxed_params(model, rng))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

  with mesh_context(mesh, rules):
    return jax.jit(init, out_shardings=shardings)(rng)
