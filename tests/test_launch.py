"""End to end through the launcher: train on CPU, SIGTERM, re-run resumes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dry_run_prints_pod_commands():
  out = subprocess.run(
      ["bash", "launch/tpu_run.sh", "--dry_run", "--setup", "--tpu=my-pod", "--zone=us-east5-a",
       "--project=proj", "--config=configs/tiny_train.py", "--workdir=gs://b/run",
       "--config.train.num_steps=5"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
  lines = out.strip().splitlines()
  assert any("scp" in l and "--worker=all" in l for l in lines)
  run_line = next(l for l in lines if " ssh " in l and "sbp_jax.main" in l)
  assert "ssh my-pod --worker=all --zone=us-east5-a --project=proj" in run_line
  assert "--config=configs/tiny_train.py" in run_line and "--workdir=gs://b/run" in run_line
  assert "--config.train.num_steps=5" in run_line


def test_launcher_requires_config():
  r = subprocess.run(["bash", "launch/tpu_run.sh", "--dry_run"], cwd=ROOT, capture_output=True,
                     text=True)
  assert r.returncode == 2 and "--config=" in r.stderr


def _sigterm_after_checkpoint(cmd, env, ckpt: str, after: int) -> str:
  """Runs cmd until a checkpoint step > `after` exists, then SIGTERMs it; its output."""
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    steps = [int(d) for d in os.listdir(ckpt) if d.isdigit()] if os.path.isdir(ckpt) else []
    if any(s > after for s in steps):
      break
    time.sleep(0.5)
  assert proc.poll() is None, proc.stdout.read()
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  return out


@pytest.mark.slow
def test_launcher_trains_then_sigterm_then_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  cmd = ["bash", "launch/tpu_run.sh", "--config=configs/tiny_train.py", f"--workdir={workdir}",
         "--config.train.num_steps=400", "--config.train.checkpoint_every=20",
         "--config.train.log_every=10", "--config.train.eval_every=0"]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  ckpt = os.path.join(workdir, "checkpoints")
  out = _sigterm_after_checkpoint(cmd, env, ckpt, 0)
  assert "SIGTERM: saved step" in out
  stopped = int(out.split("SIGTERM: saved step")[1].split()[0])
  assert 20 <= stopped < 400

  # The same command resumes (num_steps is part of the run's identity: a changed schedule
  # would be a different run). Stop it again once it has saved one more checkpoint.
  out = _sigterm_after_checkpoint(cmd, env, ckpt, stopped)
  assert f"Resumed from step {stopped}" in out, out
  with open(os.path.join(workdir, "history.json")) as f:
    losses = {int(k): v for k, v in json.load(f)["loss"].items()}
  assert max(losses) > stopped
  assert losses[max(losses)] < losses[min(losses)]  # falling loss over the whole run


def test_dry_run_creates_multislice_and_collects_logs():
  out = subprocess.run(
      ["bash", "launch/tpu_run.sh", "--dry_run", "--create", "--tpu=pod", "--zone=us-east5-a",
       "--accelerator_type=v5p-128", "--num_slices=2", "--config=configs/tiny_train.py"],
      cwd=ROOT, capture_output=True, text=True, check=True).stdout
  lines = out.strip().splitlines()
  # Create-or-reuse one queued resource with two nodes.
  assert any("queued-resources describe pod" in l and "|| gcloud compute tpus queued-resources "
             "create pod" in l and "--node-count=2" in l and "--accelerator-type=v5p-128" in l
             for l in lines)
  # The job runs on every worker of both slices, each told its slice id.
  runs = [l for l in lines if " ssh " in l and "sbp_jax.main" in l]
  assert len(runs) == 2
  for i, l in enumerate(runs):
    assert f"ssh pod-{i} --worker=all" in l
    assert f"MEGASCALE_SLICE_ID={i}" in l and "MEGASCALE_NUM_SLICES=2" in l
  # Only the first node's worker 0 streams its log (tee); every worker writes one.
  assert "tee" in runs[0] and "tee" not in runs[1]
  assert sum("scp pod-" in l and "logs" in l for l in lines) == 2


def test_create_requires_accelerator_type():
  r = subprocess.run(["bash", "launch/tpu_run.sh", "--dry_run", "--create", "--tpu=p",
                      "--zone=z", "--config=configs/tiny_train.py"], cwd=ROOT,
                     capture_output=True, text=True)
  assert r.returncode == 2 and "--accelerator_type" in r.stderr


def test_config_env_is_applied_before_the_job(monkeypatch):
  from sbp_jax import main as entry
  monkeypatch.delenv("SBP_TEST_FLAG", raising=False)
  monkeypatch.setenv("SBP_TEST_KEEP", "shell")
  entry.apply_env({"SBP_TEST_FLAG": "--a=1", "SBP_TEST_KEEP": "config"})
  assert os.environ["SBP_TEST_FLAG"] == "--a=1"
  assert os.environ["SBP_TEST_KEEP"] == "shell"  # the shell's value wins


@pytest.mark.slow
def test_compile_cache_keeps_the_jobs_programs(tmp_path):
  """compile_cache.dir fills with the job's compiled programs, and a second run that loads
  them trains to the same losses."""
  cache = tmp_path / "xla"
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")
         and k != "JAX_COMPILATION_CACHE_DIR"}
  losses = []
  for run in ("a", "b"):
    work = tmp_path / run
    subprocess.run([sys.executable, "-m", "sbp_jax.main", "--config=configs/tiny_train.py",
                    f"--workdir={work}", "--config.train.num_steps=3",
                    "--config.train.eval_every=0", f"--config.compile_cache.dir={cache}",
                    "--config.compile_cache.min_compile_secs=0"],
                   cwd=ROOT, env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=1"),
                   check=True, capture_output=True)
    losses.append(json.load(open(work / "history.json"))["loss"])
    if run == "a":
      kept = sorted(p.name for p in cache.iterdir())
      assert kept, "no program was written to compile_cache.dir"
  assert sorted(p.name for p in cache.iterdir()) == kept  # run b compiled nothing new
  assert losses[0] == losses[1]
