#!/usr/bin/env bash
# Reproduces checkpoints/fomm-face-fast.pth.tar, the live default: fomm-face's recipe on a network with a
# third of its per-frame work, started from the shipped fomm-face (its keypoint detector and dense motion;
# the narrower generator from scratch), on the same mixed real-face data, then 4 more low-rate epochs.
#   CPU, as shipped (2 cores, one training thread; MINUTES of training, 75 by default): bash scripts/train-fast-face.sh
#   GPU (H200-class): GPU=1 MINUTES=6 bash scripts/train-fast-face.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fast-face}  # a fresh folder: train refuses to replace a run in it
MINUTES=${MINUTES:-75}
if [ "${GPU:-0}" = 1 ]; then EXTRA=(--workers 6); else EXTRA=(--cpu); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/real-face-data.sh

python puppet.py train --config checkpoints/fomm-face-fast.yaml --data data/mixed --init checkpoints/fomm-face.pth.tar \
    --minutes "$MINUTES" --snapshots --output "$OUT" --sheet-every 0 "${EXTRA[@]}"
# 4 more epochs at the low rate, so the average below has more of them
python puppet.py train --config checkpoints/fomm-face-fast.yaml --data data/mixed --resume "$OUT/checkpoint.pth.tar" \
    --epochs $(( $(python scripts/run_info.py epoch "$OUT") + 4 )) --snapshots --output "$OUT" --sheet-every 0 "${EXTRA[@]}"
# ship the weight average of the low-learning-rate epochs (those after the milestone)
python puppet.py average $(python scripts/run_info.py low-rate "$OUT") --config checkpoints/fomm-face-fast.yaml --data data/mixed --output "$OUT/fomm-face-fast.pth.tar"
echo "done: $OUT/fomm-face-fast.pth.tar (copy it to checkpoints/ to ship it)"
