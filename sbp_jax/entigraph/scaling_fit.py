"""The mixture-of-exponential scaling curve of EntiGraph CPT (thesis 2.7.3, A.5.1), fitted and plotted.

The thesis fits y(x) = a - b1 r1^x - b2 r2^x - b3 r3^x (x: synthetic tokens in
millions, y: QA accuracy) by non-linear least squares (scipy). x is counted in the
largest of tokens / thousands / millions / billions that the sweep's largest count
reaches: a CPU sweep of 5K-20K tokens is 0.005-0.02 million, where even r = 1e-12
gives r^x > 0.5, so the curve could not bend within the sweep. Three terms have
seven parameters; a sweep with fewer points determines fewer, so `fit` uses
K = min(3, (n - 1) // 2) terms for n points (K = 1, a - b r^x, for 3 or 4 points)
and says so in its result. Constraints: b_k >= 0 and 0 < r_k < 1, so the curve
rises towards its plateau a.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

MILLION = 1e6
UNITS = ((1e9, "billion tokens"), (1e6, "million tokens"), (1e3, "thousand tokens"),
         (1.0, "tokens"))


def unit(max_tokens: float) -> tuple[float, str]:
  """The largest unit that max_tokens reaches (millions, as in the thesis, from 1M up)."""
  return next(((s, n) for s, n in UNITS if max_tokens >= s), UNITS[-1])


def curve(x, a, *br):
  x = np.asarray(x, np.float64)
  y = np.full_like(x, a)
  for b, r in zip(br[0::2], br[1::2]):
    y = y - b * np.power(r, x)
  return y


def fit(tokens: Sequence[float], acc: Sequence[float], max_terms: int = 3) -> dict:
  """{'terms', 'a', 'b', 'r', 'rmse', 'x_unit', 'x_scale'}; terms 0 (a constant) below 3
  points. r is per x_unit (x_scale tokens)."""
  from scipy.optimize import curve_fit  # pylint: disable=g-import-not-at-top
  tokens = np.asarray(tokens, np.float64)
  y = np.asarray(acc, np.float64)
  if len(tokens) != len(y) or len(y) == 0:
    raise ValueError(f"fit needs matching, non-empty points; got {len(tokens)} x and {len(y)} y.")
  if not np.all(np.isfinite(tokens)) or np.any(tokens < 0):
    raise ValueError(f"fit needs finite token counts >= 0; got {tokens.tolist()}.")
  scale, name = unit(float(tokens.max()))
  x = tokens / scale
  k = max(0, min(int(max_terms), (len(x) - 1) // 2))
  if k == 0:
    return _constant(y, "fewer than 3 points", scale, name)
  span = max(float(x.max()), 1e-9)
  p0 = [float(y.max())]
  lo, hi = [0.0], [1.0]
  for i in range(k):  # rates spread over the sweep's range, so terms start apart
    p0 += [max(float(y.max() - y.min()), 1e-3) / k, float(np.exp(-(i + 1) * 2.0 / span))]
    lo += [0.0, 1e-12]
    hi += [1.0, 1.0 - 1e-12]
  p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
  try:
    params, _ = curve_fit(curve, x, y, p0=p0, bounds=(lo, hi), maxfev=20000)
  except (RuntimeError, ValueError) as e:  # e.g. flat or noisy points the curve cannot follow
    return _constant(y, f"no convergence ({e})", scale, name)
  resid = y - curve(x, *params)
  return dict(terms=k, a=float(params[0]), b=[float(v) for v in params[1::2]],
              r=[float(v) for v in params[2::2]], rmse=float(np.sqrt(np.mean(resid ** 2))),
              x_unit=name, x_scale=scale)


def _constant(y: np.ndarray, why: str, scale: float, name: str) -> dict:
  a = float(y.mean())
  return dict(terms=0, a=a, b=[], r=[], rmse=float(np.sqrt(np.mean((y - a) ** 2))),
              x_unit=name, x_scale=scale, note=f"constant: {why}")


def predict(f: dict, tokens) -> np.ndarray:
  br = [v for pair in zip(f["b"], f["r"]) for v in pair]
  return curve(np.asarray(tokens, np.float64) / f.get("x_scale", MILLION), f["a"], *br)


def _panel(ax, points, f: dict, baselines: dict | None, title: str) -> None:
  xs = np.array([p[0] for p in points], np.float64)
  ys = np.array([p[1] for p in points], np.float64)
  ax.plot(xs, ys, "o", color="C0", label="EntiGraph CPT")
  grid = np.linspace(0.0, max(float(xs.max()), 1.0), 200)
  ax.plot(grid, predict(f, grid), "-", color="C0", alpha=0.6,
          label=f"mixture-of-exponential fit ({f['terms']} term{'s' * (f['terms'] != 1)})")
  for i, (name, acc) in enumerate(sorted((baselines or {}).items())):
    ax.axhline(acc, ls="--", color=f"C{i + 1}", label=name)
  ax.axhline(0.25, ls=":", color="grey", label="chance")
  ax.set_xlabel("EntiGraph tokens")
  ax.set_ylabel("closed-book QA accuracy")
  ax.set_title(title)
  ax.legend(fontsize=7)


def plot(points: Sequence[Sequence[float]], f: dict, path: str, baselines: dict | None = None,
         title: str = "EntiGraph CPT scaling", loglik: tuple | None = None) -> None:
  """Accuracy vs EntiGraph tokens with the fitted curve; baselines as horizontal lines.
  loglik: (points, fit, baselines) of the same arms scored by choice log-likelihood, drawn
  in a second panel (where a small model's gains show)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sbp_jax import fileio  # pylint: disable=g-import-not-at-top
  cols = 1 + (loglik is not None)
  fig, axes = plt.subplots(1, cols, figsize=(5.5 * cols, 3.8), squeeze=False)
  _panel(axes[0, 0], points, f, baselines,
         title + (" (sampled letters)" if loglik is not None else ""))
  if loglik is not None:
    _panel(axes[0, 1], *loglik, title + " (choice log-likelihood)")
  fig.tight_layout()
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=120)
  plt.close(fig)
  fileio.write_bytes(path, buf.getvalue())
