#!/usr/bin/env bash
# Reproduces the shipped real-face models, checkpoints/fomm-face.pth.tar and checkpoints/coseg-face.pth.tar,
# from the packages in the README's data table (fetched once) and the synthetic-data models they start from.
#   CPU, as shipped (2 cores, both models at once, one thread each; about 2 h): bash scripts/train-real-faces.sh
#   GPU (H200-class, about 10 min; carry data/sources if the machine has no registry): GPU=1 bash scripts/train-real-faces.sh
# Time budgets (--minutes) make the number of epochs follow the machine's speed; OUT picks the run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/real-faces}  # a fresh folder: train refuses to replace a run in it
if [ "${GPU:-0}" = 1 ]; then FOMM_MIN=6; COSEG_MIN=6; EXTRA=(--workers 6); else FOMM_MIN=75; COSEG_MIN=60; EXTRA=(--cpu); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
bash scripts/real-face-data.sh

# Two chains side by side. FOMM: stage 1 on the real clips (5 epochs at the high rate), stage 2 on the mixed
# set (a new schedule). Co-part: stage 1 on the real clips (7 epochs at the high rate), stage 2 adds the
# chroma-key matte loss (a new schedule).
(python puppet.py train --config configs/fomm-face-stage1.yaml --data data/real --init checkpoints/fomm-small.pth.tar \
     --epochs 5 --output "$OUT/fomm-stage1" --sheet-every 0 "${EXTRA[@]}" &&
 python puppet.py train --config checkpoints/fomm-face.yaml --data data/mixed --init "$OUT/fomm-stage1/checkpoint.pth.tar" \
     --minutes "$FOMM_MIN" --snapshots --output "$OUT/fomm" --sheet-every 0 "${EXTRA[@]}" &&
 # 4 more epochs at the low rate, so the average below has more of them
 python puppet.py train --config checkpoints/fomm-face.yaml --data data/mixed --resume "$OUT/fomm/checkpoint.pth.tar" \
     --epochs $(( $(python scripts/run_info.py epoch "$OUT/fomm") + 4 )) --snapshots --output "$OUT/fomm" --sheet-every 0 "${EXTRA[@]}") &
fomm=$!
(python puppet.py train --config configs/coseg-face-stage1.yaml --data data/real --init checkpoints/coseg-small.pth.tar \
     --epochs 7 --output "$OUT/coseg-stage1" --sheet-every 0 "${EXTRA[@]}" &&
 python puppet.py train --config checkpoints/coseg-face.yaml --data data/real --init "$OUT/coseg-stage1/checkpoint.pth.tar" \
     --minutes "$COSEG_MIN" --snapshots --output "$OUT/coseg" --sheet-every 0 "${EXTRA[@]}") &
coseg=$!
wait $fomm  # (a failed chain stops the script here, under set -e)
wait $coseg

# ship the weight average of each run's low-learning-rate epochs (those after its milestone)
# shellcheck disable=SC2046 # one word per snapshot
python puppet.py average $(python scripts/run_info.py low-rate "$OUT/fomm") --config checkpoints/fomm-face.yaml --data data/mixed --output "$OUT/fomm-face.pth.tar"
python puppet.py average $(python scripts/run_info.py low-rate "$OUT/coseg") --config checkpoints/coseg-face.yaml --data data/real --output "$OUT/coseg-face.pth.tar"
echo "done: $OUT/fomm-face.pth.tar $OUT/coseg-face.pth.tar (copy them to checkpoints/ to ship them)"
