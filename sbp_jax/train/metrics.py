"""Per-step metrics: TensorBoard events, a readable log line, a terminal progress bar.

Only process 0 writes; other hosts' writers are no-ops.
"""

from __future__ import annotations

import logging
import sys
import time

import jax

log = logging.getLogger("sbp_jax")


class MetricWriter:

  def __init__(self, logdir: str, total_steps: int, start_step: int = 0):
    self.main = jax.process_index() == 0
    self._tb = None
    if self.main:
      from flax.metrics import tensorboard  # imports TF lazily
      self._tb = tensorboard.SummaryWriter(logdir)
    self._bar = None
    if self.main and sys.stderr.isatty():
      from tqdm import tqdm
      self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

  def write(self, step: int, scalars: dict[str, float], prefix: str = "train") -> None:
    if not self.main:
      return
    for k, v in scalars.items():
      self._tb.scalar(f"{prefix}/{k}", float(v), step)
    self._tb.flush()
    line = " ".join(f"{k}={_fmt(v)}" for k, v in scalars.items())
    if self._bar is not None:
      self._bar.write(f"[{prefix}] step {step} {line}")
    else:
      log.info("[%s] step %d %s", prefix, step, line)

  def advance(self, n: int = 1, **postfix) -> None:
    if self._bar is not None:
      self._bar.update(n)
      if postfix:
        self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    if self._tb is not None:
      self._tb.close()


def _fmt(v) -> str:
  v = float(v)
  return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


class Throughput:
  """Tokens/s and MFU between two log points."""

  def __init__(self, flops_per_token: float, peak_flops_total: float):
    self.fpt, self.peak = flops_per_token, peak_flops_total
    self.reset()

  def reset(self):
    self.t0, self.tokens = time.perf_counter(), 0.0

  def add(self, tokens: float):
    self.tokens += tokens

  def read(self) -> dict[str, float]:
    dt = max(time.perf_counter() - self.t0, 1e-9)
    tps = self.tokens / dt
    out = {"tokens_per_s": tps}
    if self.peak > 0:
      out["mfu"] = tps * self.fpt / self.peak
    self.reset()
    return out
