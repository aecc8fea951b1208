#!/usr/bin/env bash
# A/B of the live call bar: the bench (bundled webcam clip paced at 30 fps, shipped live model, --backend
# auto, 1280x720, detail and head position on) of an earlier commit against this checkout, in turns, so a
# drift of the machine's speed hits both; writes docs/bench-ab-NAME.txt (each run's line, then the medians).
#   bash scripts/bench-ab.sh 1c3e31a epyc-export 4
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:?give the commit to compare against}
NAME=${2:?give a name, e.g. epyc}
PAIRS=${3:-4}
OUT="docs/bench-ab-$NAME.txt"
BASE=$(mktemp -d)
trap 'rm -rf "$BASE"' EXIT
git worktree add -q --detach "$BASE/ref" "$REF"
trap 'git worktree remove --force "$BASE/ref"; rm -rf "$BASE"' EXIT
ARGS=(bench --driving checkpoints/webcam.mp4 --fps 30 --frames 150)
run() {  # folder label
  (cd "$1" && python puppet.py "${ARGS[@]}" 2>&1) > "$BASE/run.txt"
  echo "$2 $(grep -h 'backend auto' "$BASE/run.txt" | cut -d'(' -f1)| $(tail -1 "$BASE/run.txt")"
}
{
  echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; python puppet.py ${ARGS[*]}; A = $REF, B = $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
  for _ in $(seq "$PAIRS"); do
    run "$BASE/ref" A
    run . B
  done
} | tee "$OUT.tmp"
python - "$OUT.tmp" <<'EOF' | tee -a "$OUT.tmp"
import re, statistics, sys
runs = {"A": [], "B": []}
for line in open(sys.argv[1]):
    found = re.search(r"p50 (\d+) / p95 (\d+) ms", line)
    if found and line[0] in runs:
        runs[line[0]].append((int(found[1]), int(found[2])))
for label, values in runs.items():
    print(f"{label}: median of {len(values)} runs: latency p50 {statistics.median(v[0] for v in values)} ms, "
          f"p95 {statistics.median(v[1] for v in values)} ms")
EOF
mv "$OUT.tmp" "$OUT"
