#!/usr/bin/env bash
# The live model taught fomm-face's cross-identity frames (train --teacher, training/distill.py): the shipped
# fomm-face-fast fine-tuned on the mixed real-face data with configs/fomm-face-fast-distill.yaml, then the
# weight average of its low-rate epochs.
#   CPU (2 cores, one training thread; MINUTES of training, 55 by default): bash scripts/train-fast-distill.sh
#   GPU (H200-class): GPU=1 MINUTES=5 bash scripts/train-fast-distill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fast-distill}  # a fresh folder: train refuses to replace a run in it
MINUTES=${MINUTES:-55}
CONFIG=configs/fomm-face-fast-distill.yaml
if [ "${GPU:-0}" = 1 ]; then EXTRA=(--workers 6); else EXTRA=(--cpu); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/real-face-data.sh

python puppet.py train --config "$CONFIG" --data data/mixed --init checkpoints/fomm-face-fast.pth.tar \
    --teacher checkpoints/fomm-face.pth.tar --teacher-config checkpoints/fomm-face.yaml \
    --minutes "$MINUTES" --snapshots --output "$OUT" --sheet-every 0 "${EXTRA[@]}"
python puppet.py average $(python scripts/run_info.py low-rate "$OUT") --config "$CONFIG" --data data/mixed \
    --output "$OUT/fomm-face-fast.pth.tar"
echo "done: $OUT/fomm-face-fast.pth.tar (copy it to checkpoints/ to ship it)"
