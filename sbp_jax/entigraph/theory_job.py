"""Job `entigraph_theory`: simulate the toy model, fit (2.2), print the phases, plot."""

from __future__ import annotations

import logging
import os

import numpy as np

from sbp_jax import fileio
from sbp_jax.entigraph import theory

log = logging.getLogger("sbp_jax")


def toy_curves(V: int, lam: float, max_t: float, num_points: int, num_runs: int, eps: float,
               seed: int) -> dict:
  """Simulated, exact and fitted link density of the toy model, with Theorem 1's bounds.

  Time x is in units of V(V-1) steps, as in A.5.1. Shared by the job and the notebook.
  """
  g = theory.sample_graph(V, lam, seed)
  pairs = g.V * (g.V - 1)
  steps = int(max_t * pairs)
  ts = np.unique(np.concatenate([[0], np.geomspace(1, steps, num_points).astype(np.int64)]))
  exact = theory.expected_link_density(g, ts)
  sims = np.stack([theory.simulate(g, steps, ts, seed=seed + 1 + r) for r in range(num_runs)])
  x = ts / pairs
  fit = theory.fit_mixture_of_exponentials(x, sims.mean(0), terms=3)
  lower, upper = theory.theorem1_bounds(g.V, lam, ts, eps)
  return dict(graph=g, x=x, sims=sims, exact=exact, fit=fit, lower=lower, upper=upper,
              phases=theory.growth_phases(fit, float(x[-1])))


def run(config, workdir: str) -> dict:
  c = config.theory
  k = toy_curves(c.num_entities, c.lam, c.max_t, c.num_points, c.num_runs, c.eps, config.seed)
  g, x, sims, exact, fit = k["graph"], k["x"], k["sims"], k["exact"], k["fit"]
  lower, upper, phases = k["lower"], k["upper"], k["phases"]
  mean = sims.mean(0)
  result = {
      "V": g.V, "lambda": c.lam, "p": c.lam / g.V, "runs": c.num_runs,
      "fit": {"a": fit.a, "b": fit.b, "r": fit.r, "rmse": fit.rmse},
      "phases": phases,
      "max_abs_sim_minus_exact": float(np.abs(mean - exact).max()),
      "within_theorem1_bounds": float(np.mean((mean >= lower) & (mean <= upper))),
      "final_link_density": float(mean[-1]),
      "reachable_fraction": float(np.mean(g.subtree[~np.eye(g.V, dtype=bool)] > 0)),
  }
  terms = " ".join(f"- {b:.4f} x {r:.4f}^t" for b, r in zip(fit.b, fit.r))
  print(f"Toy model V={g.V} lambda={c.lam} ({c.num_runs} runs, t in units of V(V-1) steps)")
  print(f"  fitted: Acc(t) = {fit.a:.4f} {terms}   (rmse {fit.rmse:.2e})")
  print(f"  phase 1 linear       0 <= t < {phases['t1_linear_end']:.3g} "
        f"(initial slope {phases['initial_slope']:.3g})")
  print(f"  phase 2 log-linear   {phases['t1_linear_end']:.3g} <= t < "
        f"{phases['t2_plateau_start']:.3g} (slope {phases['loglinear_slope']:.3g} per e-fold)")
  print(f"  phase 3 plateau      t >= {phases['t2_plateau_start']:.3g} "
        f"(asymptote {fit.a:.4f}; reachable pairs {result['reachable_fraction']:.4f})")
  print(f"  simulation vs exact expectation: max |diff| {result['max_abs_sim_minus_exact']:.2e}; "
        f"share of points within Theorem 1 bounds (eps={c.eps}): "
        f"{result['within_theorem1_bounds']:.2f}")
  fileio.makedirs(workdir)
  fileio.write_json(os.path.join(workdir, "theory.json"), result)
  _plot(os.path.join(workdir, "theory.png"), k)
  return result


def _plot(path, curves):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  plot_toy(curves, axes)
  fig.tight_layout()
  with fileio.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)


def plot_toy(curves: dict, axes) -> None:
  """Two panels (linear and log time) of toy_curves' output onto matplotlib axes."""
  x, sims, exact, fit = curves["x"], curves["sims"], curves["exact"], curves["fit"]
  lower, upper, phases = curves["lower"], curves["upper"], curves["phases"]
  for ax, logx in zip(axes, (False, True)):
    sel = x > 0 if logx else slice(None)
    ax.plot(x[sel], sims.mean(0)[sel], "o", ms=3, label="simulation (mean)")
    ax.plot(x[sel], exact[sel], "-", lw=1, label="exact expectation")
    ax.plot(x[sel], fit(x[sel]), "--", label="mixture-of-exponential fit")
    ax.fill_between(x[sel], lower[sel], upper[sel], alpha=0.15, label="Theorem 1 bounds")
    for t in (phases["t1_linear_end"], phases["t2_plateau_start"]):
      ax.axvline(t, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("t / V(V-1)")
    ax.set_ylabel("link density Acc(M_t)")
    if logx:
      ax.set_xscale("log")
  axes[0].legend(fontsize=8)
