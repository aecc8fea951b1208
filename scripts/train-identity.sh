#!/usr/bin/env bash
# The identity step of the shipped defaults: a trained model fine-tuned on the mixed real-face data with the
# identity term on its cross-identity frames (loss_weights.identity, training/identity_loss.py: MobileFace
# embeddings of each frame against its avatar's), then the weight average of its low-rate epochs.
#   bash scripts/train-identity.sh fast   the live default (checkpoints/fomm-face-fast.pth.tar) from the taught
#       model scripts/train-fast-distill.sh writes (runs/fast-distill/fomm-face-fast.pth.tar), still taught by
#       fomm-face (TEACHER, checkpoints/fomm-face.pth.tar); configs/fomm-face-fast-identity.yaml
#   bash scripts/train-identity.sh face   animate's default (checkpoints/fomm-face.pth.tar) from the model
#       scripts/train-real-faces.sh writes (runs/real-faces/fomm-face.pth.tar); configs/fomm-face-identity.yaml
# The starts of the release before this step: git show a5f44af:checkpoints/fomm-face-fast.pth.tar (INIT for fast)
# and git show a5f44af:checkpoints/fomm-face.pth.tar (INIT for face; also fast's TEACHER, should fomm-face change).
# INIT, TEACHER, CONFIG, OUT (a fresh run folder), MINUTES (CPU: 45, one thread) override; GPU=1 MINUTES=5 on an H200-class GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  fast) CONFIG=${CONFIG:-configs/fomm-face-fast-identity.yaml}; INIT=${INIT:-runs/fast-distill/fomm-face-fast.pth.tar}
        TEACHER=${TEACHER:-checkpoints/fomm-face.pth.tar}
        TAUGHT=(--teacher "$TEACHER" --teacher-config checkpoints/fomm-face.yaml); NAME=fomm-face-fast ;;
  face) CONFIG=${CONFIG:-configs/fomm-face-identity.yaml}; INIT=${INIT:-runs/real-faces/fomm-face.pth.tar}; TAUGHT=()
        NAME=fomm-face ;;
  *) echo "usage: bash scripts/train-identity.sh fast|face" >&2; exit 2 ;;
esac
OUT=${OUT:-runs/$NAME-identity}
MINUTES=${MINUTES:-45}
for file in "$INIT" ${TEACHER:+"$TEACHER"}; do
  if [ ! -f "$file" ]; then
    echo "error: no $file: run the scripts before this step, or pass INIT=FILE / TEACHER=FILE (see the header)" >&2; exit 1
  fi
done
bash scripts/real-face-data.sh
python scripts/face_masks.py data/mixed --size 128  # the anchor landmarks the identity term aligns faces by
bash scripts/fine-tune.sh "$CONFIG" "$INIT" "$OUT" "$NAME" "$MINUTES" "${TAUGHT[@]}"
