#!/usr/bin/env bash
# One node's share of launch/slurm/pretrain.sbatch: torchrun with c10d rendezvous, and USR1 / TERM
# forwarded to the trainer processes (torchrun itself would die on USR1).
set -uo pipefail
extra=()
[ -n "${FMP_DEEPSPEED:-}" ] && extra=(--deepspeed-config "$FMP_DEEPSPEED")
# shellcheck disable=SC2086  # overrides are separate words on purpose
"$FMP_PYTHON" -m torch.distributed.run \
    --nnodes="$SLURM_JOB_NUM_NODES" --nproc_per_node="$FMP_PROCS_PER_NODE" \
    --rdzv_backend=c10d --rdzv_endpoint="$FMP_RDZV_HOST:$FMP_PORT" \
    --rdzv_id="$SLURM_JOB_ID-${SLURM_RESTART_COUNT:-0}" --max_restarts=0 \
    -m fmpretrain.train --config "$FMP_CONFIG" --no-progress "${extra[@]}" \
    out="$FMP_OUT" $FMP_OVERRIDES &
child=$!
trap 'pkill -USR1 -P "$child" || true' USR1 TERM
while :; do
    wait "$child"
    code=$?
    kill -0 "$child" 2>/dev/null || break
done
exit "$code"
