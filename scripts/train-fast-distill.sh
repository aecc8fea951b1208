#!/usr/bin/env bash
# Reproduces checkpoints/fomm-face-fast.pth.tar, the live default: the untaught live model (what
# scripts/train-fast-face.sh writes, runs/fast-face/fomm-face-fast.pth.tar; the one shipped before it was taught is
# `git show 51ecd77:checkpoints/fomm-face-fast.pth.tar`) fine-tuned on the mixed real-face data with
# configs/fomm-face-fast-distill.yaml, fomm-face's cross-identity frames as its teacher (train --teacher,
# training/distill.py), then the weight average of its low-rate epochs.
#   CPU (2 cores, one training thread; MINUTES of training, 55 by default): bash scripts/train-fast-distill.sh
#   from the release's own start: git show 51ecd77:checkpoints/fomm-face-fast.pth.tar > untaught.pth.tar
#                                 INIT=untaught.pth.tar bash scripts/train-fast-distill.sh
#   GPU (H200-class): GPU=1 MINUTES=5 bash scripts/train-fast-distill.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/fast-distill}  # a fresh folder: train refuses to replace a run in it
MINUTES=${MINUTES:-55}
INIT=${INIT:-runs/fast-face/fomm-face-fast.pth.tar}
if [ ! -f "$INIT" ]; then
  echo "error: no untaught live model at $INIT: run scripts/train-fast-face.sh first, or pass INIT=FILE" >&2; exit 1
fi
bash scripts/real-face-data.sh
bash scripts/fine-tune.sh configs/fomm-face-fast-distill.yaml "$INIT" "$OUT" fomm-face-fast "$MINUTES" \
    --teacher checkpoints/fomm-face.pth.tar --teacher-config checkpoints/fomm-face.yaml
