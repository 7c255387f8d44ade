"""The toy model of EntiGraph scaling (thesis 2.7, A.5).

Entities are V vertices; the source documents know each directed relation
(x, y) independently with probability p = lambda / V (the matrix M0). Each
synthetic step samples a pair (x, y) uniformly and, if y is reachable from x in
M0, adds the relations (x, z) for every vertex z on the breadth-first path from
x to y. Link density Acc(M_t) = E|M_t|_1 / (V (V - 1)) plays the role of QA
accuracy.

Besides the Monte-Carlo simulation, the expectation has a closed form given
M0 and its BFS trees: a missing relation (i, j) with j reachable from i is
added at a step exactly when x = i and y lies in j's subtree of the BFS tree
rooted at i, so P[(i, j) known at t] = 1 - (1 - s_ij / (V (V - 1)))^t with s_ij
that subtree's size. This gives the exact curve the simulation estimates.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize
from scipy.sparse import csgraph, csr_matrix


@dataclasses.dataclass(frozen=True)
class Graph:
  adjacency: np.ndarray    # M0, bool [V, V], zero diagonal
  predecessors: np.ndarray  # [V, V]: BFS parent of j in the tree rooted at i, -9999 if none
  subtree: np.ndarray      # [V, V]: size of j's subtree in i's BFS tree (0 if unreachable)

  @property
  def V(self) -> int:
    return self.adjacency.shape[0]


def sample_graph(V: int, lam: float, seed: int) -> Graph:
  """M0 with i.i.d. Bernoulli(lam / V) off-diagonal entries, plus BFS trees."""
  rng = np.random.default_rng(seed)
  adj = rng.random((V, V)) < lam / V
  np.fill_diagonal(adj, False)
  _, pred = csgraph.shortest_path(csr_matrix(adj.astype(np.int8)), method="D", unweighted=True,
                                  directed=True, return_predecessors=True)
  return Graph(adj, pred, _subtree_sizes(pred))


def _subtree_sizes(pred: np.ndarray) -> np.ndarray:
  """For every root i, the size of each vertex's subtree in i's BFS tree."""
  V = pred.shape[0]
  sizes = np.zeros((V, V), np.int64)
  for i in range(V):
    parent = pred[i]
    reach = np.flatnonzero(parent >= 0)
    # Depth by walking parents; then accumulate counts from the deepest level up.
    depth = np.zeros(V, np.int64)
    for j in reach:
      d, k = 0, j
      while k != i:
        k, d = parent[k], d + 1
      depth[j] = d
    count = np.zeros(V, np.int64)
    count[reach] = 1
    for j in reach[np.argsort(-depth[reach])]:
      if parent[j] != i:
        count[parent[j]] += count[j]
    sizes[i] = count
  return sizes


def expected_link_density(g: Graph, t: np.ndarray) -> np.ndarray:
  """Exact E[Acc(M_t) | M0] for each t (see the module docstring)."""
  V = g.V
  pairs = V * (V - 1)
  missing = (~g.adjacency) & (g.subtree > 0)
  q = g.subtree[missing] / pairs
  known = g.adjacency.sum()
  t = np.asarray(t, np.float64)
  added = np.array([np.sum(1.0 - (1.0 - q) ** s) for s in t.ravel()]).reshape(t.shape)
  return (known + added) / pairs


def simulate(g: Graph, steps: int, record: np.ndarray, seed: int) -> np.ndarray:
  """One Monte-Carlo run of the augmentation; link density at each `record` step."""
  rng = np.random.default_rng(seed)
  V = g.V
  known = g.adjacency.copy()
  count = int(known.sum())
  record = np.asarray(record)
  out = np.empty(len(record))
  r = 0
  xs = rng.integers(0, V, steps)
  ys = (xs + rng.integers(1, V, steps)) % V  # uniform over y != x
  for step in range(steps + 1):
    while r < len(record) and record[r] == step:
      out[r] = count / (V * (V - 1))
      r += 1
    if step == steps:
      break
    x, k = xs[step], ys[step]
    if g.predecessors[x, k] < 0:
      continue  # unreachable: nothing is written
    while k != x:  # relations (x, z) for every z on the path, y included
      if not known[x, k]:
        known[x, k] = True
        count += 1
      k = g.predecessors[x, k]
  return out


def extinction_probability(lam: float) -> float:
  """Smallest root in [0, 1] of rho = exp(lam (rho - 1)) (Poisson branching)."""
  if lam <= 1:
    return 1.0
  return optimize.brentq(lambda r: r - math.exp(lam * (r - 1)), 0.0, 1.0 - 1e-12)


def theorem1_bounds(V: int, lam: float, t: np.ndarray, eps: float):
  """(lower, upper) link-density bounds of Theorem 1 at steps t."""
  p = lam / V
  c_lam = (1 - extinction_probability(lam)) ** 2
  c_lb = 1 - 1 / (V * (V - 1))
  c_ub = 1 - (1 + eps) * math.log(V) / (V * (V - 1) * math.log(lam))
  t = np.asarray(t, np.float64)
  lower = (p + c_lam * (1 - c_lb ** t)) * (1 - eps)
  upper = (p + c_lam * (1 - c_ub ** t)) * (1 + eps)
  return lower, upper


@dataclasses.dataclass(frozen=True)
class MixtureFit:
  """y(x) = a - sum_k b_k r_k^x, the three-term form of (2.2) used in A.5.1."""
  a: float
  b: tuple[float, ...]
  r: tuple[float, ...]
  rmse: float

  def __call__(self, x):
    x = np.asarray(x, np.float64)
    return self.a - sum(b * r ** x for b, r in zip(self.b, self.r))


def fit_mixture_of_exponentials(x, y, terms: int = 3) -> MixtureFit:
  """Non-linear least squares (scipy) with r_k = exp(-c_k), c_k > 0, b_k >= 0.

  Initial decay rates are spread over the decades of x so that the terms
  capture fast, medium and slow growth respectively.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  span = max(x.max(), 1e-12)
  rise = max(y.max() - y.min(), 1e-12)

  def f(x, a, *bc):
    b, c = bc[:terms], bc[terms:]
    return a - sum(bk * np.exp(-ck * x) for bk, ck in zip(b, c))

  c0 = [10.0 ** (1 - k) * 10 / span for k in range(terms)][::-1]
  p0 = [y.max()] + [rise / terms] * terms + sorted(c0, reverse=True)
  lo = [-np.inf] + [0.0] * terms + [1e-12] * terms
  params, _ = optimize.curve_fit(f, x, y, p0=p0, bounds=(lo, np.inf), maxfev=20000)
  a, b, c = params[0], params[1:1 + terms], params[1 + terms:]
  order = np.argsort(c)  # slowest first, as in the thesis' fitted formula
  rmse = float(np.sqrt(np.mean((f(x, *params) - y) ** 2)))
  return MixtureFit(float(a), tuple(float(v) for v in b[order]),
                    tuple(float(math.exp(-v)) for v in c[order]), rmse)


def growth_phases(fit: MixtureFit, x_max: float, tangent_tol: float = 0.1,
                  plateau_gap: float = 0.05) -> dict[str, float]:
  """Where the fitted curve leaves its initial tangent (end of the linear phase,
  t1) and where the remaining gap to the asymptote falls under `plateau_gap` of
  the total rise (start of the plateau, t2); in between growth is log-linear,
  summarised by the slope of y against log x there."""
  x = np.concatenate([[0.0], np.geomspace(x_max * 1e-6, x_max * 1e3, 4000)])
  y = fit(x)
  slope0 = sum(b * -math.log(r) for b, r in zip(fit.b, fit.r))
  tangent = y[0] + slope0 * x
  rise = tangent - y[0]
  off = np.flatnonzero((rise > 0) & ((tangent - y) > tangent_tol * np.maximum(rise, 1e-300)))
  t1 = float(x[off[0]]) if len(off) else float(x[-1])
  total = fit.a - y[0]
  flat = np.flatnonzero((fit.a - y) < plateau_gap * total)
  t2 = float(x[flat[0]]) if len(flat) else float(x[-1])
  mid = (x > t1) & (x < t2)
  if mid.sum() >= 2:
    slope = float(np.polyfit(np.log(x[mid]), y[mid], 1)[0])
  else:
    slope = float("nan")
  return {"t1_linear_end": t1, "t2_plateau_start": t2, "loglinear_slope": slope,
          "initial_slope": float(slope0), "asymptote": fit.a}
