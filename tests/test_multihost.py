"""Two JAX processes on this machine (jax.distributed over localhost, 4 CPU
devices each) train and checkpoint exactly like one process with 8 devices, and
a new pair of processes restores their checkpoint and continues identically."""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--config=configs/tiny_train.py", "--config.train.log_every=5",
          "--config.train.eval_every=0", "--config.train.checkpoint_every=10"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT,
              XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _run_two_processes(workdir: str, steps: int) -> list[str]:
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "sbp_jax.main", *COMMON, f"--workdir={workdir}",
       f"--config.train.num_steps={steps}",
       f"--config.distributed.coordinator_address=127.0.0.1:{port}",
       "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"],
      cwd=ROOT, env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=400)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def _losses(workdir: str) -> dict:
  with open(os.path.join(workdir, "history.json")) as f:
    return {int(k): v for k, v in json.load(f)["loss"].items()}


@pytest.mark.slow
def test_two_processes_match_one_and_resume(tmp_path):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  subprocess.run([sys.executable, "-m", "sbp_jax.main", *COMMON, f"--workdir={one}",
                  "--config.train.num_steps=30"], cwd=ROOT, env=_env(8), check=True,
                 capture_output=True)
  first = _run_two_processes(two, 30)
  # Only process 0 logs metrics.
  assert "[train] step" in first[0] and "[train] step" not in first[1]
  a, b = _losses(one), _losses(two)
  assert sorted(a) == sorted(b) == list(range(1, 31))
  for step in a:
    assert b[step] == pytest.approx(a[step], abs=2e-5), step

  # Lose the last checkpoint and the history: a new pair of processes restores
  # step 20 (saved by two hosts) and recomputes 21..30 identically.
  ckpts = os.path.join(two, "checkpoints")
  assert sorted(os.listdir(ckpts)) == ["10", "20", "30"]
  shutil.rmtree(os.path.join(ckpts, "30"))
  os.remove(os.path.join(two, "history.json"))
  second = _run_two_processes(two, 30)
  assert any("Resumed from step 20" in out for out in second), second[0][-2000:]
  c = _losses(two)
  assert sorted(c) == list(range(21, 31))
  for step in c:
    assert c[step] == pytest.approx(a[step], abs=2e-5), step
