"""Training-only model paths: the projection's custom weight gradient and the
attention implementations, each against plain autodiff / einsum attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sbp_jax.model import contract as contract_lib


@pytest.mark.parametrize("x_shape,w_shape,n_in", [
    ((2, 5, 8), (8, 3, 4), 1),      # query-style: d -> (heads, head_dim)
    ((2, 5, 3, 4), (3, 4, 8), 2),   # out-style: (heads, head_dim) -> d
])
def test_contract_gradients_equal_autodiff(x_shape, w_shape, n_in):
  kx, kw, kr = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, x_shape)
  w = jax.random.normal(kw, w_shape)
  y_ref = contract_lib._forward(x, w, n_in)
  r = jax.random.normal(kr, y_ref.shape)
  ours = jax.grad(lambda x, w: jnp.sum(contract_lib.contract(x, w, n_in) * r), (0, 1))(x, w)
  ref = jax.grad(lambda x, w: jnp.sum(contract_lib._forward(x, w, n_in) * r), (0, 1))(x, w)
  np.testing.assert_allclose(contract_lib.contract(x, w, n_in), y_ref, atol=1e-6)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # The non-CPU weight gradient (TPU/GPU) is the same function.
  np.testing.assert_allclose(contract_lib._weight_grad(x, r, n_in, w_shape),
                             contract_lib._weight_grad_cpu(x, r, n_in, w_shape), atol=1e-5)
