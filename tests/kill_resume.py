"""kill -9 at random moments, then the same command: the helper of the crash tests.

`uninterrupted(cmd, progress)` runs a job once and measures how long it writes (from
its first output to its end). `killed_then_finished(cmd, progress, span, ...)` starts
the same command in another workdir and, each time it has written something new,
SIGKILLs it (its whole process group, so a launcher's children die too) after a
random delay in [0, span) drawn from a seeded generator; finally it lets the command
run to the end. The caller compares the two workdirs.

progress() counts the job's outputs so far (e.g. finished shards or checkpoints).

Every process gets an empty compilation cache of its own: a kill lands at a random moment
within the uninterrupted run's span only if each run compiles as that one did (with a
shared cache, the later runs load its programs, finish sooner, and outrun the kills).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_POLL_S = 0.05


def main_cmd(config: str, workdir: str, *overrides: str) -> list[str]:
  """`python -m sbp_jax.main` on a repository config."""
  return [sys.executable, "-m", "sbp_jax.main", f"--config={ROOT}/configs/{config}",
          f"--workdir={workdir}", *overrides]


def _start(cmd) -> subprocess.Popen:
  cache = tempfile.mkdtemp(prefix="kill-resume-xla-")
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=cache)
  log = tempfile.TemporaryFile()  # not a pipe: a full pipe would stall the job
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log,
                          start_new_session=True)
  proc.log, proc.cache = log, cache
  return proc


def _kill(proc) -> None:
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  shutil.rmtree(proc.cache, ignore_errors=True)


def _wait(proc, seconds: float, until=lambda: False) -> bool:
  """Waits up to `seconds` or until `until()`; True if proc is still running."""
  end = time.perf_counter() + seconds
  while proc.poll() is None and time.perf_counter() < end and not until():
    time.sleep(_POLL_S)
  return proc.poll() is None


def _finished(proc) -> None:
  proc.wait(timeout=600)
  shutil.rmtree(proc.cache, ignore_errors=True)
  proc.log.seek(0)
  assert proc.returncode == 0, proc.log.read()[-4000:].decode(errors="replace")


def uninterrupted(cmd, progress) -> float:
  """Runs cmd to the end; the seconds from its first output to its end."""
  proc = _start(cmd)
  _wait(proc, 600, until=lambda: progress() > 0)
  first = time.perf_counter()
  _finished(proc)
  return time.perf_counter() - first


def killed_then_finished(cmd, progress, span: float, seed: int, kills: int) -> list[tuple]:
  """Up to `kills` SIGKILLs, each at a random moment within `span` seconds after the job
  wrote something new; then the same command to the end. Returns (delay, outputs at the
  kill) for each kill that hit a running job."""
  rng = np.random.default_rng(seed)
  hits = []
  for _ in range(kills):
    before = progress()
    proc = _start(cmd)
    delay = float(rng.uniform(0, span))
    if _wait(proc, 600, until=lambda: progress() > before) and _wait(proc, delay):
      hits.append((round(delay, 2), progress()))
      _kill(proc)
    else:
      _finished(proc)  # it ended before the kill: nothing left to interrupt
      return hits
  _finished(_start(cmd))
  return hits


def files(workdir: str, skip=lambda rel: False) -> dict[str, bytes]:
  """Every file under workdir (relative path -> bytes), without temporary files of
  atomic writes (`*.tmp-*`, never read as outputs) and those `skip` names."""
  out = {}
  for base, _, names in os.walk(workdir):
    for n in names:
      rel = os.path.relpath(os.path.join(base, n), workdir)
      if ".tmp-" in n or skip(rel):
        continue
      with open(os.path.join(base, n), "rb") as f:
        out[rel] = f.read()
  return out
