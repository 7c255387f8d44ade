from sbp_jax.parallel.mesh import (batch_sharding, global_batch, logical_to_sharding, make_mesh, mesh_context,
                                   maybe_initialize_distributed, mesh_from_config, replicated)
from sbp_jax.parallel.rules import DEFAULT_RULES, MESH_AXES, make_rules
from sbp_jax.parallel.placement import batch_shards, bucket, param_shardings, place_params, round_up
