"""EntiGraph toy model (thesis 2.7): simulate, fit the mixture of exponentials, plot."""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.job = "entigraph_theory"
  c.seed = 0
  c.theory = ml_collections.ConfigDict()
  c.theory.num_entities = 200  # V
  c.theory.lam = 3.0           # p = lambda / V
  c.theory.max_t = 20.0        # simulate up to max_t * V(V-1) steps
  c.theory.num_points = 60     # log-spaced record points
  c.theory.num_runs = 3        # Monte-Carlo runs averaged
  c.theory.eps = 0.1           # epsilon of Theorem 1's bounds
  return c
