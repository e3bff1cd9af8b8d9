#!/usr/bin/env bash
# Runs runner_local.py once with the given flags and reports wall time, peak RSS and the
# pipeline root's disk use; the run's own summary lists each component's time and accuracy.
# Usage: bash bench/measure_run.sh PIPELINE_ROOT [runner_local.py flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
root="$1"; shift
log="$root.log"
mkdir -p "$(dirname "$root")"
/usr/bin/time -v -o "$root.time" .venv/bin/python runner_local.py --pipeline-root "$root" "$@" >"$log" 2>&1 || {
  echo "measure_run: runner_local.py failed, see $log" >&2; exit 1; }
sed -n '/^Run /,$p' "$log"
echo "wall (s):        $(grep 'Elapsed (wall clock)' "$root.time" | awk '{print $NF}')"
echo "peak RSS (MB):   $(( $(grep 'Maximum resident' "$root.time" | awk '{print $NF}') / 1024 ))"
echo "pipeline root:   $(du -sh "$root" | cut -f1)"
echo "machine:         $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -m)"
