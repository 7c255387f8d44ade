#!/usr/bin/env bash
# Starts any sbp_jax job: `launch/tpu_run.sh --config=configs/X.py [--workdir=DIR] [--config.a.b=v ...]`
#
# Without a TPU name it runs the job here (CPU, or a single accelerator host),
# setting up .venv on first use. With a TPU VM name it runs the same command on
# every worker of the pod:
#   launch/tpu_run.sh --tpu=NAME --zone=us-east5-a --project=P --config=... --workdir=gs://bucket/run
# TPU settings may also come from the environment: TPU_NAME, TPU_ZONE, TPU_PROJECT.
#   --setup      copy the code to every worker and install sbp_jax[tpu] there first
#   --dry_run    print every command instead of running it
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tpu="${TPU_NAME:-}"; zone="${TPU_ZONE:-}"; project="${TPU_PROJECT:-}"
setup=0; dry=0; job_args=()
for a in "$@"; do
  case "$a" in
    --tpu=*) tpu="${a#*=}" ;;
    --zone=*) zone="${a#*=}" ;;
    --project=*) project="${a#*=}" ;;
    --setup) setup=1 ;;
    --dry_run) dry=1 ;;
    *) job_args+=("$a") ;;
  esac
done
if ! printf '%s\n' "${job_args[@]}" | grep -q '^--config='; then
  echo "usage: launch/tpu_run.sh --config=configs/<name>.py [--workdir=DIR] [--config.x=v ...]" >&2
  exit 2
fi
run() { if [ "$dry" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi; }

if [ -z "$tpu" ]; then
  cd "$root"
  [ "$dry" = 1 ] || bash launch/setup.sh
  # No TPU attached and no GPU: keep JAX from probing for them.
  if [ ! -e /dev/accel0 ] && [ ! -e /dev/vfio/0 ] && ! command -v nvidia-smi >/dev/null; then
    export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
  fi
  export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
  # exec, so that a SIGTERM sent to this script reaches the job (which checkpoints and exits).
  if [ "$dry" = 1 ]; then run .venv/bin/python -m sbp_jax.main "${job_args[@]}"; exit 0; fi
  exec .venv/bin/python -m sbp_jax.main "${job_args[@]}"
fi

[ -n "$zone" ] || { echo "--zone (or TPU_ZONE) is required with --tpu" >&2; exit 2; }
gc=(gcloud compute tpus tpu-vm)
loc=(--zone="$zone"); [ -n "$project" ] && loc+=(--project="$project")
remote_dir='~/sbp_jax'
if [ "$setup" = 1 ]; then
  tarball="/tmp/sbp_jax_code.tar.gz"
  run tar -C "$root" --exclude=.venv --exclude=.git --exclude=runs -czf "$tarball" .
  run "${gc[@]}" scp "$tarball" "$tpu:/tmp/sbp_jax_code.tar.gz" --worker=all "${loc[@]}"
  run "${gc[@]}" ssh "$tpu" --worker=all "${loc[@]}" --command \
    "mkdir -p $remote_dir && tar -C $remote_dir -xzf /tmp/sbp_jax_code.tar.gz && cd $remote_dir && SBP_JAX_EXTRAS=tpu bash launch/setup.sh"
fi
quoted="$(printf '%q ' "${job_args[@]}")"
run "${gc[@]}" ssh "$tpu" --worker=all "${loc[@]}" --command \
  "cd $remote_dir && .venv/bin/python -m sbp_jax.main $quoted"
