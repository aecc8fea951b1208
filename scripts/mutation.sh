#!/usr/bin/env bash
# Mutation testing of the motion layer (issue 12): mutmut mutates the modules that setup.cfg [mutmut]
# only_mutate lists (the one place to add a module), runs for each mutant only the tests of
# pytest_add_cli_args_test_selection that call the mutated function, then this script prints the score per
# module. Not part of CI; needs `pip install -r requirements-mutation.txt`. Results: docs/mutation.md.
#
#   scripts/mutation.sh            full run from scratch (removes mutants/ first)
#   scripts/mutation.sh --resume   keep mutants/ and its cache: only changed functions and new tests rerun
#   scripts/mutation.sh --report   only print the scores of the last run
#   scripts/mutation.sh [--resume] 'motion.*' 'realtime.smoothing.*'
#                                  (re)run only the mutants whose names match (mutmut's globs); the others
#                                  stay as they were ("not checked" after a fresh start)
#   JOBS=4 scripts/mutation.sh     parallel workers (default 2)
#
# Score = killed / (total - skipped); timeouts and "no tests" count as not killed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
MUTMUT=${MUTMUT:-mutmut}

case "${1:-}" in
  --report) ;;
  -*) [ "$1" = --resume ] || { echo "usage: $0 [--resume|--report] [MUTANT_GLOB...]" >&2; exit 2; } ;&
  *)
    if [ "${1:-}" = --resume ]; then shift; else rm -rf mutants; fi
    # one BLAS/OpenMP thread per worker: the workers are forked, and a forked thread pool can hang
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    start=$(date +%s)
    # `|| true`: an interrupted run still gets its table (the unfinished mutants as "not checked")
    nice -n "${NICE:-10}" "$MUTMUT" run --max-children "${JOBS:-2}" "$@" || true
    echo "mutmut run took $(( $(date +%s) - start )) s"
    ;;
esac

"$PYTHON" - <<'PY'
"""Per-module and overall score from mutmut's per-file results (mutants/<path>.meta)."""
import configparser
import fnmatch
import json
from collections import Counter
from pathlib import Path

cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
patterns = [p for p in cfg.get("mutmut", "only_mutate").split("\n") if p]
files = sorted({p for pattern in patterns for p in map(str, Path(".").glob(pattern))})
STATUS = {1: "killed", 3: "killed", 0: "survived", 33: "no tests", 5: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}
COLUMNS = ["killed", "survived", "timeout", "no tests", "not checked", "other"]
rows, total = [], Counter()
for path in files:
    meta = Path("mutants") / (path + ".meta")
    if not meta.exists():
        continue
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    count = Counter(STATUS.get(code, "other") for code in codes.values())
    count["total"] = len(codes)
    total.update(count)
    rows.append((path, count))
rows.append(("TOTAL", total))
print(f"{'module':28} " + " ".join(f"{c:>11}" for c in COLUMNS) + f" {'total':>6} {'score':>7}")
for path, count in rows:
    if not count["total"]:
        continue  # a module without functions (errors.py, __init__.py): nothing to mutate
    tested = count["total"] - count["skipped"]
    score = 100 * count["killed"] / tested if tested else 0.0
    print(f"{path:28} " + " ".join(f"{count[c]:>11}" for c in COLUMNS) + f" {count['total']:>6} {score:>6.1f}%")
survivors = [(key, code) for path, _ in rows[:-1]
             for key, code in json.loads((Path("mutants") / (path + ".meta")).read_text())["exit_code_by_key"].items()
             if STATUS.get(code, "other") not in ("killed", "skipped")]
if survivors:
    print("\nnot killed (`mutmut show NAME` prints the diff):")
    for key, code in survivors:
        print(f"  {STATUS.get(code, code)}: {key}")
PY
