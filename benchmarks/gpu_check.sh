#!/usr/bin/env bash
# One GPU check in one script (under 8 minutes): CUDA tests, batched descriptors on the GPU,
# bf16 (and fp32) training atoms/s and peak memory of small/base/large, DeepSpeed on NCCL with
# one process. Writes one JSON, "$OUT/gpu_check.json" (or runs/gpu_check.json without $OUT);
# render it with `python benchmarks/gpu_table.py gpu_check.json`. Each section fails soft: its
# error is recorded and the script goes on.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, venv active or in .venv
#   QUICK=1 DEVICE=cpu bash benchmarks/gpu_check.sh   # plumbing smoke test without a GPU
set -u
cd "$(dirname "$0")/.."
[ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ] && . .venv/bin/activate
# the checkout itself is importable, installed or not (a bare GPU machine with torch & co.)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

DEST="${OUT:-runs}"
WORK="${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
SECTIONS="$WORK/sections"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
mkdir -p "$DEST" "$SECTIONS"
PY="${PYTHON:-$(command -v python || command -v python3)}"
CHECK="$PY benchmarks/gpu_check.py"
START=$(date +%s)
BUDGET="${GPU_CHECK_BUDGET:-450}"  # seconds for all sections (the whole script stays under 8 min)
log() { echo "[gpu_check $(( $(date +%s) - START ))s] $*"; }

# section NAME SECONDS COMMAND...: run with a time limit (its cap, or what is left of the
# budget); the exit status lands in $RC (124: timed out, 125: no time left, not run)
section() {
    local name=$1 limit=$2 left
    shift 2
    left=$(( BUDGET - ($(date +%s) - START) ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 5 ]; then
        log "$name: skipped, the time budget is spent"
        RC=125
        return 0
    fi
    log "$name (limit ${limit}s)"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    RC=$?
    [ $RC -ne 0 ] && log "$name: exit $RC (see $WORK/$name.log)"
    tail -n 3 "$WORK/$name.log"
    return 0
}
# fail NAME MESSAGE: record an error for a section whose own step did not write its file
fail() {
    [ -f "$SECTIONS/$1.json" ] && return 0
    printf '{"error": %s, "rc": %s}\n' "$($PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$2")" \
        "${RC:-null}" >"$SECTIONS/$1.json"
}

if [ "$QUICK" = 1 ]; then
    N_DESC=100; TRAIN="--batches 1 --repeats 1 --max-atoms-per-batch 256 --configs small"
    STEPS=4; N_FEAT=40
else
    N_DESC=2000; TRAIN="--batches 4 --repeats 2 --max-atoms-per-batch 4096 --configs small,base,large"
    STEPS=40; N_FEAT=400
fi

# 1. environment (5 s)
section env 45 $CHECK env --out "$SECTIONS/env.json"
fail env "env section failed"

# 2. CUDA tests (descriptors, batched descriptors, models): every test with cuda in its name
section pytest 100 env OMP_NUM_THREADS=4 $PY -m pytest -q -p no:cacheprovider -k cuda \
    tests/descriptors tests/models
$CHECK pytest --out "$SECTIONS/pytest.json" --log "$WORK/pytest.log" --rc "$RC" || fail pytest "parse failed"

# 3. batched descriptors on the device (real sets)
section descriptors 90 $CHECK descriptors --out "$SECTIONS/descriptors.json" --device "$DEVICE" \
    --n "$N_DESC" --repeats 2
fail descriptors "descriptors section failed or timed out (exit $RC)"

# 4. training step atoms/s and peak memory: bf16 autocast, then fp32 for the ratio
for precision in bf16 fp32; do
    flag=""; [ "$precision" = bf16 ] && flag="--bf16"
    cap=90; [ "$precision" = fp32 ] && cap=60
    section "train_$precision" "$cap" $PY benchmarks/train_throughput.py --device "$DEVICE" $flag \
        --skip-loader --no-peer --threads 1 $TRAIN --json "$WORK/train_$precision.raw.json"
    if [ -f "$WORK/train_$precision.raw.json" ]; then
        $CHECK train --out "$SECTIONS/train_$precision.json" --rc "$RC" \
            --train-json "$WORK/train_$precision.raw.json"
    fi
    fail "train_$precision" "train_throughput.py ($precision) failed or timed out (exit $RC)"
done

# 5. DeepSpeed on NCCL, one process: featurize a few shards, pre-train a few steps (bf16 auto)
RUN="$WORK/pretrain"
section featurize 50 $PY -m fmpretrain.cli featurize --config configs/featurize/demo.yaml descriptor=ead \
    source.n=$N_FEAT source.max_atoms=32 chunk_size=50 workers=2 out="$WORK/shards"
section pretrain 80 $PY -m fmpretrain.cli pretrain --config configs/pretrain/demo.yaml --no-progress \
    data="$WORK/shards" out="$RUN" max_steps=$STEPS log_every=5 eval_every=1000 \
    checkpoint_every=1000 max_atoms_per_batch=2048 wandb.mode=disabled
PRETRAIN_RC=$RC
section deepspeed 60 $CHECK deepspeed --out "$SECTIONS/deepspeed.json" --run "$RUN" \
    --rc "$PRETRAIN_RC" --probe-timeout 50
fail deepspeed "deepspeed section failed or timed out (exit $RC; pretrain exit $PRETRAIN_RC)"

$CHECK merge --out "$DEST/gpu_check.json" --sections "$SECTIONS"
cp "$WORK"/*.log "$DEST/" 2>/dev/null
log "wrote $DEST/gpu_check.json (logs in $WORK and $DEST)"
$PY benchmarks/gpu_table.py "$DEST/gpu_check.json" || true
