#!/usr/bin/env bash
# Experiments for issue 23 (talking faces): the live model fomm-face-fast fine-tuned from its shipped
# checkpoint on the same mixed real-face data with an expression-aware loss, named by CONFIG:
#   configs/fomm-face-fast-expr.yaml (default; not shipped): L1 inside the driving frame's mouth and eye
#     landmark masks, weight 10, low rate 2e-5;
#   configs/fomm-face-fast-anchor.yaml: four keypoints tied to the lips and upper eyelids (training/anchors.py).
# The landmarks and masks are made once with dlib and cached in each clip's frame folder.
#   CPU (2 cores, one training thread; MINUTES of training, 35 by default): bash scripts/train-fast-expr.sh
#   CONFIG=configs/fomm-face-fast-anchor.yaml OUT=runs/fast-anchor MINUTES=50 bash scripts/train-fast-expr.sh
#   GPU (H200-class): GPU=1 MINUTES=3 bash scripts/train-fast-expr.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/fomm-face-fast-expr.yaml}
OUT=${OUT:-runs/fast-expr}  # a fresh folder: train refuses to replace a run in it
MINUTES=${MINUTES:-35}
if [ "${GPU:-0}" = 1 ]; then EXTRA=(--workers 6); else EXTRA=(--cpu); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/real-face-data.sh
python scripts/face_masks.py data/mixed  # about 4 minutes once; clips that have them are skipped

python puppet.py train --config "$CONFIG" --data data/mixed --init checkpoints/fomm-face-fast.pth.tar \
    --minutes "$MINUTES" --snapshots --output "$OUT" --sheet-every 0 "${EXTRA[@]}"
echo "done: $OUT/checkpoint.pth.tar (evaluate it as the README evaluates checkpoints/fomm-face-fast.pth.tar)"
