#!/usr/bin/env bash
# Experiment for issue 23 (not shipped): the live model fomm-face-fast fine-tuned from its shipped checkpoint
# with the expression loss (configs/fomm-face-fast-expr.yaml: L1 inside the driving frame's mouth and eye
# landmark masks, weight 10; low rate 2e-5) on the same mixed real-face data. The masks are made once with
# dlib and cached in each clip's frame folder.
#   CPU (2 cores, one training thread; MINUTES of training, 35 by default): bash scripts/train-fast-expr.sh
#   GPU (H200-class): GPU=1 MINUTES=3 bash scripts/train-fast-expr.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fast-expr}  # a fresh folder: train refuses to replace a run in it
MINUTES=${MINUTES:-35}
if [ "${GPU:-0}" = 1 ]; then EXTRA=(--workers 6); else EXTRA=(--cpu); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/real-face-data.sh
python scripts/face_masks.py data/mixed  # about 4 minutes once; clips that have masks are skipped

python puppet.py train --config configs/fomm-face-fast-expr.yaml --data data/mixed --init checkpoints/fomm-face-fast.pth.tar \
    --minutes "$MINUTES" --snapshots --output "$OUT" --sheet-every 0 "${EXTRA[@]}"
echo "done: $OUT/checkpoint.pth.tar (evaluate it as the README evaluates checkpoints/fomm-face-fast.pth.tar)"
