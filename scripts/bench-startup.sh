#!/usr/bin/env bash
# Measures how long the single binary takes to answer `version` (median of N runs, after one
# warm-up run that extracts the addon) from an empty dir with a bare environment, and its size.
# Then the time from exec of `run` to its first poll of a local reference job server.
# Usage: scripts/bench-startup.sh [BINARY] [RUNS]   (default dist/hsm-driver-linux-x64, 10)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
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

# First poll: exec of `run` until the reference job server sees its first long poll (mTLS
# handshake, HSM login, algorithm probes, database open included), on the dev token and SQLite.
node=$root/node_modules/.bin/node
envfile=$(bash "$root/scripts/dev-hsm.sh" "$root/.dev/softhsm")
bash "$root/scripts/pki.sh" "$root/.dev/pki" driver >/dev/null
pki=$root/.dev/pki
"$node" "$root/scripts/job-server.ts" --cert "$pki/server.pem" --key "$pki/server.key" --ca "$pki/api-ca.pem" \
  --admin-port 0 >"$tmp/server.out" 2>"$tmp/server.err" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q '^admin on' "$tmp/server.err" 2>/dev/null && break; sleep 0.05; done
proxy=$(sed -n 's#^listening on https://##p' "$tmp/server.out")
admin=$(sed -n 's#^admin on ##p' "$tmp/server.err")
polls() { curl -s "$admin/admin/polls" | { grep -o '"at"' || true; } | wc -l; }
firsts=()
for _ in $(seq 5); do
  before=$(polls)
  start=$(date +%s%N)
  (set -a; . "$envfile"; set +a; exec env -i PATH=/usr/bin:/bin HOME="$tmp" SOFTHSM2_CONF="$SOFTHSM2_CONF" PKCS11_MODULE="$PKCS11_MODULE" \
    TOKEN_LABEL="$TOKEN_LABEL" USER_PIN_FILE="$USER_PIN_FILE" RESIDENT_ALGORITHMS=eddsa-ed25519 SQLITE_PATH="$tmp/keys.db" \
    "$bin" run --proxy-addr "$proxy" --client-cert "$pki/driver-chain.pem" --client-key "$pki/driver.key" --ca-cert "$pki/api-ca.pem" \
    >/dev/null 2>&1) &
  driver=$!
  while [ "$(polls)" -le "$before" ]; do sleep 0.005; done
  firsts+=($(( ($(date +%s%N) - start) / 1000000 )))
  kill -TERM $driver; wait $driver || true
done
sorted=($(printf '%s\n' "${firsts[@]}" | sort -n))
printf 'run → first poll: median %d ms over 5 runs (min %d ms, max %d ms)\n' "${sorted[2]}" "${sorted[0]}" "${sorted[4]}"
