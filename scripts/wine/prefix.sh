#!/usr/bin/env bash
# Prepares a Wine prefix where Node 24 runs (../shared/FINDINGS.md, "Working test recipe"):
# Windows 10 mode and a patched copy of Wine's kernelbase.dll loaded as native. Idempotent;
# prints the prefix path. Usage: scripts/wine/prefix.sh [PREFIX] (default .dev/wine-prefix)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${1:-$here/../../.dev/wine-prefix}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
wine=${WINE:-/usr/lib/wine/wine64}
wineserver=${WINESERVER:-/usr/lib/wine/wineserver}
source_dll=/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/kernelbase.dll
for f in "$wine" "$wineserver" "$source_dll"; do
  [ -e "$f" ] || { echo "wine prefix: $f is missing; install Debian's wine64 (scripts/install-deps.sh --wine)" >&2; exit 1; }
done
# The marker names the Wine build the patch was made from: a Wine upgrade remakes the prefix.
stamp="$(sha256sum "$source_dll" | cut -c1-16)"
if [ "$(cat "$prefix/.hsm-driver-prefix" 2>/dev/null)" = "$stamp" ]; then echo "$prefix"; exit 0; fi
export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
log=$prefix/.prepare.log
{
  "$wine" wineboot --init
  "$wine" winecfg /v win10
  "$wine" reg add 'HKCU\Software\Wine\DllOverrides' /v kernelbase /d native /f
  "$wineserver" -w
} >"$log" 2>&1 || { echo "wine prefix: preparing $prefix failed; see $log" >&2; exit 1; }
node "$here/patch-kernelbase.mjs" "$source_dll" "$prefix/drive_c/windows/system32/kernelbase.dll"
echo "$stamp" >"$prefix/.hsm-driver-prefix"
echo "$prefix"
