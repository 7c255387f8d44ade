"""The experiment's machine-readable report and its training-dynamics plot (Fig. 3.3).

Every arm's trainer evaluates held-out perplexity experiment.eval_points times
over its budget (history.json); report.json holds the last point of each arm,
SBP's share of the oracle's gain, the seed gate and the Table B.1 similarities.
"""

from __future__ import annotations

import os

from sbp_jax import fileio

ARM_KEYS = {"baseline": "baseline", "SBP": "sbp", "oracle": "oracle"}


def curve(arm: dict) -> list[tuple[int, float]]:
  """(tokens seen, held-out perplexity) at each of an arm's evaluations, in step order."""
  run_dir = os.path.dirname(arm["checkpoints"])
  ev = fileio.read_json(os.path.join(run_dir, "history.json"))["eval"]
  per_step = int(arm["tokens"]) // int(arm["num_steps"])
  return [(int(s) * per_step, float(ev[s]["perplexity"])) for s in sorted(ev, key=int)]


def share_of_gain(baseline: float, sbp: float, oracle: float) -> float | None:
  """SBP's improvement over the baseline as a fraction of the oracle's (None: no oracle gain)."""
  gain = baseline - oracle
  return (baseline - sbp) / gain if gain > 0 else None


def build(stages: dict, curves: dict[str, list]) -> dict:
  """report.json's content from the experiment's stage records."""
  ppl = {ARM_KEYS[n]: c[-1][1] for n, c in curves.items() if c}
  out = dict(heldout_perplexity=ppl,
             share_of_oracle_gain_heldout=share_of_gain(ppl["baseline"], ppl["sbp"],
                                                        ppl["oracle"])
             if {"baseline", "sbp", "oracle"} <= set(ppl) else None,
             dynamics={ARM_KEYS[n]: [dict(tokens=t, perplexity=p) for t, p in c]
                       for n, c in curves.items()})
  if "seed_gate" in stages:
    out["seed_nll_gap"] = stages["seed_gate"]["gap"]
    out["seed_nll"] = {k: stages["seed_gate"][k] for k in ("true", "shuffled")}
  if "seed_gate_random" in stages:
    out["seed_nll_gap_random_pair_synth"] = stages["seed_gate_random"]["gap"]
  b1 = stages.get("quality", {}).get("b1", {})
  out["seed_similarity"] = {k: b1.get(src) for k, src in (
      ("paired", "paired"), ("random_docs", "random"), ("sbp", "generated_sbp"),
      ("random_pair_synth", "generated_random"))}
  if "fact_check" in stages:
    out["concept_fidelity"] = stages["fact_check"]
  if "pair" in stages and stages["pair"].get("concept_purity") is not None:
    out["pair_concept_purity"] = stages["pair"]["concept_purity"]
  return out


def plot(curves: dict[str, list], path: str, title: str = "") -> None:
  """Held-out perplexity against tokens seen, one line per arm (a PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  # Left: the whole run (log scale); right: the second half, where the arms separate.
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, zoom in zip(axes, (False, True)):
    for name, c in curves.items():
      pts = c[len(c) // 2:] if zoom else c
      ax.plot([t for t, _ in pts], [p for _, p in pts], marker="o", label=name)
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("held-out perplexity")
    if not zoom:
      ax.set_yscale("log")
    ax.set_title("second half (linear)" if zoom else (title or "Held-out perplexity"))
    ax.legend()
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
