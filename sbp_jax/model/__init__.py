from sbp_jax.model.config import ModelConfig
from sbp_jax.model.params import count_params, flops_per_token
from sbp_jax.model.transformer import (CACHE_AXES, Transformer, boxed_params, init_cache,
                                      param_logical_specs, unstack_layers)
