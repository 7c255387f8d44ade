"""The TPU AOT benchmarks from a CPU host: one clear message without libtpu, and
with it (where installed) a train step whose splash attention lowers to the
Mosaic kernel rather than its interpret-mode emulation."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None or bool(
    os.environ.get("TPU_LIBRARY_PATH"))
# A tiny model at 512 tokens on 4 chips: seconds to compile, same code path as 3B.
TINY = ["--model=tiny", "--topology=v5p:2x2x1", "--seq_len=512", "--global_batch=8",
        "--grad_accum=1", "--probe_flops=0", "--attention=splash"]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
  return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(HAS_LIBTPU, reason="libtpu is installed here")
@pytest.mark.parametrize("script,args", [
    ("aot_compile.py", TINY),
    ("fit_table.py", ["--models=tiny", "--slices=v5p-32", "--workloads=synth_tune"]),
])
def test_without_libtpu_one_message_names_the_install(script, args):
  r = _run(script, *args)
  assert r.returncode == 1
  assert "Traceback" not in r.stderr
  assert "needs libtpu" in r.stderr and "pip install .[tpu]" in r.stderr
  assert "--target" in r.stderr


@pytest.mark.skipif(not HAS_LIBTPU, reason="needs libtpu (pip install .[tpu])")
def test_splash_train_step_compiles_the_tpu_kernel(tmp_path):
  hlo = tmp_path / "step.hlo"
  r = _run("aot_compile.py", *TINY, f"--dump_hlo={hlo}")
  assert r.returncode == 0, r.stderr[-2000:]
  fits = [line.split()[-1] for line in r.stdout.splitlines() if line.startswith("FITS")]
  assert fits == ["yes"], r.stdout[-2000:]
  text = hlo.read_text()
  # Forward (run again by remat) and both backward kernels, as TPU custom calls.
  for kernel in ("splash_mha_fwd", "splash_mha_dq", "splash_mha_dkv"):
    assert kernel in text, kernel
  assert 'custom_call_target="tpu_custom_call"' in text
