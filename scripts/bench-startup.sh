#!/usr/bin/env bash
# Measures how long the single binary takes to answer `version` (median of N runs, after one
# warm-up run that extracts the addon) from an empty dir with a bare environment, and its size.
# Usage: scripts/bench-startup.sh [BINARY] [RUNS]   (default dist/hsm-driver-linux-x64, 10)
set -euo pipefail
bin=$(realpath "${1:-$(dirname "$0")/../dist/hsm-driver-linux-x64}")
runs=${2:-10}
[ -x "$bin" ] || { echo "bench-startup: no binary at $bin: run npm run build" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
run() { env -i PATH=/usr/bin:/bin HOME="$tmp" "$bin" version >/dev/null; }
run
times=()
for _ in $(seq "$runs"); do
  start=$(date +%s%N)
  run
  times+=($(( ($(date +%s%N) - start) / 1000 )))
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
mid=$(( runs / 2 ))
if (( runs % 2 )); then median=${sorted[$mid]}; else median=$(( (sorted[mid - 1] + sorted[mid]) / 2 )); fi
size=$(stat -c %s "$bin")
printf 'binary: %s\nsize: %d bytes (%s MiB)\nversion start-up: median %d ms over %d runs (min %d ms, max %d ms)\n' \
  "$bin" "$size" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')" \
  $(( median / 1000 )) "$runs" $(( sorted[0] / 1000 )) $(( sorted[runs - 1] / 1000 ))
