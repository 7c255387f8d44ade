"""Is SBP's effect larger than the seed-to-seed spread? The experiment over several seeds.

Runs the sbp_experiment job of a config once per seed (each in its own process
and work directory, so a re-run resumes finished seeds), reads each report.json
and prints every arm's held-out perplexity (mean and standard deviation over
seeds), the oracle's and SBP's gains, and whether each gain exceeds 3x the
spread (the larger of the two arms' standard deviations). It also prints each gain's
paired spread, the standard deviation over seeds of the per-seed gain: the arms of
one seed share their corpus, init and data order, so that is the noise on the gain
itself. The verdict stays on the arms' spread, the stricter of the two.

In configs/demo_cpu.py the concept corpus is fixed (experiment.concepts.seed), so
--config.seed varies training only.

  .venv/bin/python benchmarks/sbp_effect.py --config=configs/demo_cpu.py \
      --workdir=runs/sbp_effect --seeds=0,1,2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

from sbp_jax import fileio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = ("baseline", "sbp", "oracle")


def run_seed(config: str, workdir: str, seed: int, extra: list[str]) -> dict:
  path = os.path.join(workdir, f"seed{seed}", "report.json")
  if not os.path.exists(path):
    subprocess.run([sys.executable, "-m", "sbp_jax.main", f"--config={config}",
                    f"--workdir={os.path.dirname(path)}", f"--config.seed={seed}", *extra],
                   cwd=ROOT, check=True, env=dict(os.environ, PYTHONPATH=ROOT))
  return fileio.read_json(path)


def summarize(reports: list[dict]) -> dict:
  """Mean and spread (std over seeds, ddof=1) of each arm and of the two gains."""
  ppl = {a: np.array([r["heldout_perplexity"][a] for r in reports]) for a in ARMS}
  out = {a: dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else 0.0)
         for a, v in ppl.items()}
  for name, a, b in (("oracle_gain", "baseline", "oracle"), ("sbp_gain", "baseline", "sbp")):
    gain = float(out[a]["mean"] - out[b]["mean"])
    spread = max(out[a]["std"], out[b]["std"])
    per_seed = ppl[a] - ppl[b]
    paired = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0
    out[name] = dict(gain=gain, spread=spread, beyond_3x_spread=bool(gain > 3 * spread),
                     per_seed=[float(g) for g in per_seed], paired_spread=paired,
                     beyond_3x_paired_spread=bool(gain > 3 * paired))
  out["share_of_oracle_gain"] = [r["share_of_oracle_gain_heldout"] for r in reports]
  out["seed_nll_gap"] = [r.get("seed_nll_gap") for r in reports]
  return out


def format_summary(s: dict, seeds: list[int]) -> str:
  lines = [f"held-out perplexity over seeds {seeds} (mean +- std)"]
  lines += [f"  {a:<9}{s[a]['mean']:>10.4f} +- {s[a]['std']:.4f}" for a in ARMS]
  for name in ("oracle_gain", "sbp_gain"):
    g = s[name]
    lines.append(f"  {name:<12} {g['gain']:+.4f} (spread {g['spread']:.4f}): "
                 f"{'beyond' if g['beyond_3x_spread'] else 'NOT beyond'} 3x the spread; "
                 f"paired spread {g['paired_spread']:.4f}: "
                 f"{'beyond' if g['beyond_3x_paired_spread'] else 'NOT beyond'} 3x")
  lines.append("  share of the oracle's gain per seed: " + ", ".join(
      "n.a." if v is None else f"{100 * v:.0f}%" for v in s["share_of_oracle_gain"]))
  lines.append("  seed NLL gap per seed: " + ", ".join(
      "n.a." if v is None else f"{v:.3f}" for v in s["seed_nll_gap"]))
  return "\n".join(lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/demo_cpu.py")
  ap.add_argument("--workdir", default="runs/sbp_effect")
  ap.add_argument("--seeds", default="0,1,2")
  ap.add_argument("overrides", nargs="*", help="extra --config.x=y flags for every seed")
  args = ap.parse_args()
  seeds = [int(s) for s in args.seeds.split(",")]
  if len(seeds) < 2:
    raise SystemExit("--seeds: give at least 2 seeds (3 or more to judge the spread).")
  reports = [run_seed(args.config, args.workdir, s, args.overrides) for s in seeds]
  s = summarize(reports)
  print(format_summary(s, seeds))
  fileio.write_json(os.path.join(args.workdir, "summary.json"), dict(seeds=seeds, **s))


if __name__ == "__main__":
  main()
