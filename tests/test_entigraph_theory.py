"""EntiGraph toy model: simulation vs exact expectation, Theorem 1, the fit."""

import numpy as np
import pytest

from sbp_jax.entigraph import theory


@pytest.fixture(scope="module")
def graph():
  return theory.sample_graph(80, 3.0, seed=0)


def _times(g, max_t=10.0, n=30):
  pairs = g.V * (g.V - 1)
  return np.unique(np.concatenate([[0], np.geomspace(1, max_t * pairs, n).astype(int)]))


def test_subtree_sizes_on_a_path_graph():
  # 0 -> 1 -> 2 -> 3: in the tree rooted at 0, subtree sizes are 3, 2, 1.
  adj = np.zeros((4, 4), bool)
  adj[0, 1] = adj[1, 2] = adj[2, 3] = True
  pred = np.full((4, 4), -9999)
  for i in range(4):
    for j in range(i + 1, 4):
      pred[i, j] = j - 1
  sizes = theory._subtree_sizes(pred)
  assert list(sizes[0]) == [0, 3, 2, 1]
  assert list(sizes[3]) == [0, 0, 0, 0]


def test_simulation_matches_exact_expectation(graph):
  ts = _times(graph)
  exact = theory.expected_link_density(graph, ts)
  sims = np.mean([theory.simulate(graph, int(ts[-1]), ts, seed=s) for s in range(4)], axis=0)
  assert exact[0] == pytest.approx(graph.adjacency.sum() / (80 * 79))
  np.testing.assert_allclose(sims, exact, atol=0.01)
  # The limit is the share of reachable ordered pairs.
  reach = np.mean(graph.subtree[~np.eye(80, dtype=bool)] > 0)
  assert exact[-1] == pytest.approx(reach, abs=2e-3)


def test_mean_link_density_within_theorem1_bounds():
  g = theory.sample_graph(300, 3.0, seed=1)
  ts = _times(g, max_t=8.0, n=25)
  acc = theory.expected_link_density(g, ts)
  lower, upper = theory.theorem1_bounds(300, 3.0, ts, eps=0.1)
  assert np.all(acc >= lower) and np.all(acc <= upper)
  # The bounds are not vacuous: the plateau bound is near (1 - rho)^2.
  rho = theory.extinction_probability(3.0)
  assert rho == pytest.approx(np.exp(3.0 * (rho - 1)))
  assert upper[-1] < 1.0 and lower[-1] > 0.75


def test_fit_recovers_a_known_mixture():
  x = np.geomspace(1e-3, 50, 80)
  true = theory.MixtureFit(0.9, (0.5, 0.3, 0.05), (0.9, 0.2, 1e-4), 0.0)
  fit = theory.fit_mixture_of_exponentials(x, true(x))
  assert fit.rmse < 1e-3
  assert fit.a == pytest.approx(0.9, abs=5e-3)
  np.testing.assert_allclose(fit(x), true(x), atol=3e-3)


def test_fit_to_simulation_and_three_phases(graph):
  ts = _times(graph, max_t=20.0, n=40)
  x = ts / (graph.V * (graph.V - 1))
  y = theory.expected_link_density(graph, ts)
  fit = theory.fit_mixture_of_exponentials(x, y)
  assert fit.rmse < 5e-3
  ph = theory.growth_phases(fit, x[-1])
  assert 0 < ph["t1_linear_end"] < ph["t2_plateau_start"] < x[-1]
  assert ph["loglinear_slope"] > 0
  assert fit(ph["t2_plateau_start"]) > 0.9 * fit.a
