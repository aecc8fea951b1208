#!/usr/bin/env bash
# One fine-tuning step of a shipped model, shared by train-fast-distill.sh and train-identity.sh: train CONFIG on
# the mixed real-face data from INIT for MINUTES (--snapshots into a fresh OUT), then the weight average of the
# low-rate epochs as OUT/NAME.pth.tar. Further arguments go to `train` (e.g. --teacher ...).
#   bash scripts/fine-tune.sh CONFIG INIT OUT NAME MINUTES [TRAIN_ARGS...]   (GPU=1: 6 loader workers, else --cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$1 INIT=$2 OUT=$3 NAME=$4 MINUTES=$5
shift 5
if [ "${GPU:-0}" = 1 ]; then EXTRA=(--workers 6); else EXTRA=(--cpu); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python puppet.py train --config "$CONFIG" --data data/mixed --init "$INIT" "$@" \
    --minutes "$MINUTES" --snapshots --output "$OUT" --sheet-every 0 "${EXTRA[@]}"
# shellcheck disable=SC2046 # one word per snapshot
python puppet.py average $(python scripts/run_info.py low-rate "$OUT") --config "$CONFIG" --data data/mixed \
    --output "$OUT/$NAME.pth.tar"
echo "done: $OUT/$NAME.pth.tar (copy it to checkpoints/ to ship it)"
