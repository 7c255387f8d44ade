"""The projection matmul, with a weight gradient laid out for XLA's CPU dot kernels.

Autodiff of y = x . w gives the weight gradient x^T . dy as a dot that
contracts the *leading* (token) axis of x. XLA's CPU backend hands such a dot
to its generic Eigen kernel, which on the profiled train step ran at half the
speed of the fast (YNNPACK) path and, for the output projection, took a fifth
of the step. Materialising x^T first (a small copy: activations, not logits)
turns it into a plain row-major matmul on the fast path. The optimization
barrier keeps XLA from folding the transpose back into the dot. Other backends
(TPU, GPU) pick their own dot layouts and get autodiff's plain form.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

Array = jax.Array
_LETTERS = "abcdefghijklmnopqrstuvw"


def _spec(x_ndim: int, n_in: int, n_out: int) -> tuple[str, str, str]:
  batch = _LETTERS[:x_ndim - n_in]
  ins = _LETTERS[x_ndim - n_in:x_ndim]
  outs = _LETTERS[x_ndim:x_ndim + n_out]
  return batch, ins, outs


def _forward(x: Array, w: Array, n_in: int) -> Array:
  batch, ins, outs = _spec(x.ndim, n_in, w.ndim - n_in)
  return jnp.einsum(f"{batch}{ins},{ins}{outs}->{batch}{outs}", x, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def contract(x: Array, w: Array, n_in: int) -> Array:
  """y = x . w over the last `n_in` axes of x and the first `n_in` axes of w."""
  return _forward(x, w, n_in)


def _contract_fwd(x, w, n_in):
  return _forward(x, w, n_in), (x, w)


def _weight_grad_cpu(x: Array, g: Array, n_in: int, w_shape) -> Array:
  rows = math.prod(x.shape[:x.ndim - n_in])
  xt = jax.lax.optimization_barrier(x.reshape(rows, -1).T)  # [in, tokens], row-major
  return (xt @ g.reshape(rows, -1)).reshape(w_shape)


def _weight_grad(x: Array, g: Array, n_in: int, w_shape) -> Array:
  batch, ins, outs = _spec(x.ndim, n_in, len(w_shape) - n_in)
  return jnp.einsum(f"{batch}{ins},{batch}{outs}->{ins}{outs}", x, g)


def _contract_bwd(n_in, res, g):
  x, w = res
  batch, ins, outs = _spec(x.ndim, n_in, w.ndim - n_in)
  dx = jnp.einsum(f"{batch}{outs},{ins}{outs}->{batch}{ins}", g, w)
  dw = jax.lax.platform_dependent(
      x, g, cpu=lambda x, g: _weight_grad_cpu(x, g, n_in, w.shape),
      default=lambda x, g: _weight_grad(x, g, n_in, w.shape))
  return dx.astype(x.dtype), dw.astype(w.dtype)


contract.defvjp(_contract_fwd, _contract_bwd)
