#!/usr/bin/env bash
# Starts any sbp_jax job: `launch/tpu_run.sh --config=configs/X.py [--workdir=DIR] [--config.a.b=v ...]`
#
# Without a TPU name the job runs here (CPU, or one accelerator host), setting up
# .venv on first use. With a TPU name it runs the same command on every worker:
#
#   launch/tpu_run.sh --tpu=NAME --zone=us-east5-a --project=P [--create] [--setup] \
#       --config=configs/sbp_3b_200b.py --workdir=gs://bucket/run
#
# TPU flags (or environment: TPU_NAME, TPU_ZONE, TPU_PROJECT, TPU_ACCELERATOR_TYPE,
# TPU_RUNTIME_VERSION, TPU_NUM_SLICES):
#   --accelerator_type=v5p-128  --runtime_version=v2-alpha-tpuv5   used by --create
#   --create        create the TPU VM if it does not exist (a queued resource when
#                   --num_slices > 1), wait until it is ready, else reuse it
#   --num_slices=N  multi-slice: nodes NAME-0 .. NAME-(N-1), joined over DCN
#                   (the config's mesh.dcn says how the mesh spans them)
#   --spot          ask for spot capacity when creating
#   --setup         copy the code to every worker and install sbp_jax[tpu] there
#   --dry_run       print every command instead of running it
# Worker 0 of the first node streams its log here; every worker keeps its own log in
# ~/sbp_jax/logs/, and when the job fails they are all copied to runs/pod_logs/<run id>/.
# TPU-specific environment (LIBTPU_INIT_ARGS, ...) comes from the config's `env` section,
# which sbp_jax.main applies before JAX starts.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tpu="${TPU_NAME:-}"; zone="${TPU_ZONE:-}"; project="${TPU_PROJECT:-}"
accel="${TPU_ACCELERATOR_TYPE:-}"; runtime="${TPU_RUNTIME_VERSION:-v2-alpha-tpuv5}"
slices="${TPU_NUM_SLICES:-1}"
create=0; setup=0; dry=0; spot=0; job_args=()
for a in "$@"; do
  case "$a" in
    --tpu=*) tpu="${a#*=}" ;;
    --zone=*) zone="${a#*=}" ;;
    --project=*) project="${a#*=}" ;;
    --accelerator_type=*) accel="${a#*=}" ;;
    --runtime_version=*) runtime="${a#*=}" ;;
    --num_slices=*) slices="${a#*=}" ;;
    --create) create=1 ;;
    --setup) setup=1 ;;
    --spot) spot=1 ;;
    --dry_run) dry=1 ;;
    *) job_args+=("$a") ;;
  esac
done
if ! printf '%s\n' "${job_args[@]}" | grep -q '^--config='; then
  echo "usage: launch/tpu_run.sh --config=configs/<name>.py [--workdir=DIR] [--config.x=v ...]" >&2
  exit 2
fi
run() { if [ "$dry" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi; }
# exists_or "describe cmd..." -- create cmd...: create only when describe fails.
exists_or() {
  local d=() ; while [ "$1" != "--" ]; do d+=("$1"); shift; done; shift
  if [ "$dry" = 1 ]; then printf '%q ' "${d[@]}"; printf '|| '; printf '%q ' "$@"; echo; return; fi
  "${d[@]}" >/dev/null 2>&1 || "$@"
}

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

# ---------------------------------------------------------------- TPU pod mode
[ -n "$zone" ] || { echo "--zone (or TPU_ZONE) is required with --tpu" >&2; exit 2; }
[[ "$slices" =~ ^[1-9][0-9]*$ ]] || { echo "--num_slices=$slices must be a positive integer" >&2; exit 2; }
loc=(--zone="$zone"); [ -n "$project" ] && loc+=(--project="$project")
vm=(gcloud compute tpus tpu-vm)
qr=(gcloud compute tpus queued-resources)
nodes=("$tpu")
if [ "$slices" -gt 1 ]; then
  nodes=(); for ((i = 0; i < slices; i++)); do nodes+=("$tpu-$i"); done
fi

if [ "$create" = 1 ]; then
  [ -n "$accel" ] || { echo "--create needs --accelerator_type (e.g. v5p-128)" >&2; exit 2; }
  extra=(); [ "$spot" = 1 ] && extra+=(--spot)
  if [ "$slices" -gt 1 ]; then
    exists_or "${qr[@]}" describe "$tpu" "${loc[@]}" -- \
      "${qr[@]}" create "$tpu" "${loc[@]}" --node-count="$slices" --node-prefix="$tpu" \
        --accelerator-type="$accel" --runtime-version="$runtime" "${extra[@]}"
    # A queued resource is usable once it is ACTIVE (all slices provisioned).
    if [ "$dry" = 1 ]; then
      echo "# wait until: ${qr[*]} describe $tpu ${loc[*]} --format='value(state.state)' == ACTIVE"
    else
      until [ "$("${qr[@]}" describe "$tpu" "${loc[@]}" --format='value(state.state)')" = ACTIVE ]; do
        echo "tpu_run: waiting for queued resource $tpu to become ACTIVE" >&2; sleep 30
      done
    fi
  else
    exists_or "${vm[@]}" describe "$tpu" "${loc[@]}" -- \
      "${vm[@]}" create "$tpu" "${loc[@]}" --accelerator-type="$accel" --version="$runtime" \
        "${extra[@]}"
  fi
fi

remote_dir='~/sbp_jax'
if [ "$setup" = 1 ]; then
  tarball="/tmp/sbp_jax_code.tar.gz"
  run tar -C "$root" --exclude=.venv --exclude=.git --exclude=runs -czf "$tarball" .
  for node in "${nodes[@]}"; do
    run "${vm[@]}" scp "$tarball" "$node:/tmp/sbp_jax_code.tar.gz" --worker=all "${loc[@]}"
    run "${vm[@]}" ssh "$node" --worker=all "${loc[@]}" --command \
      "mkdir -p $remote_dir && tar -C $remote_dir -xzf /tmp/sbp_jax_code.tar.gz && cd $remote_dir && SBP_JAX_EXTRAS=tpu bash launch/setup.sh"
  done
fi

# Multi-slice: every slice finds the others through slice 0's first worker.
coord=""
if [ "$slices" -gt 1 ]; then
  if [ "$dry" = 1 ]; then
    coord='$COORDINATOR_IP'
    echo "# COORDINATOR_IP=\$(${vm[*]} describe ${nodes[0]} ${loc[*]} --format='value(networkEndpoints[0].ipAddress)')"
  else
    coord="$("${vm[@]}" describe "${nodes[0]}" "${loc[@]}" --format='value(networkEndpoints[0].ipAddress)')"
  fi
fi

run_id="$(date -u +%Y%m%d-%H%M%S)"
quoted="$(printf '%q ' "${job_args[@]}")"
worker_no='$(curl -sf -H Metadata-Flavor:Google http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number || echo 0)'
pids=()
for i in "${!nodes[@]}"; do
  node="${nodes[$i]}"
  envs=""
  if [ "$slices" -gt 1 ]; then
    envs="MEGASCALE_COORDINATOR_ADDRESS=$coord:8080 MEGASCALE_NUM_SLICES=$slices MEGASCALE_SLICE_ID=$i MEGASCALE_PORT=8080 "
  fi
  log="logs/$run_id.$node.w\$w.log"
  job="env $envs.venv/bin/python -m sbp_jax.main $quoted"
  # Only worker 0 of the first node prints; every worker writes its own log file.
  if [ "$i" = 0 ]; then
    body="if [ \"\$w\" = 0 ]; then $job 2>&1 | tee $log; exit \${PIPESTATUS[0]}; else $job > $log 2>&1; fi"
  else
    body="$job > $log 2>&1"
  fi
  cmd="cd $remote_dir && mkdir -p logs && w=$worker_no && $body"
  if [ "$dry" = 1 ]; then
    run "${vm[@]}" ssh "$node" --worker=all "${loc[@]}" --command "$cmd"
  else
    "${vm[@]}" ssh "$node" --worker=all "${loc[@]}" --command "$cmd" &
    pids+=($!)
  fi
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
if [ "$rc" != 0 ] || [ "$dry" = 1 ]; then
  [ "$dry" = 1 ] && echo "# on failure, collect every worker's log:"
  dest="$root/runs/pod_logs/$run_id"
  run mkdir -p "$dest"
  for node in "${nodes[@]}"; do
    run "${vm[@]}" scp "$node:$remote_dir/logs/$run_id.*" "$dest/" --worker=all "${loc[@]}" || true
  done
  [ "$dry" = 1 ] || echo "tpu_run: job failed (exit $rc); worker logs are in $dest" >&2
fi
exit "$rc"
