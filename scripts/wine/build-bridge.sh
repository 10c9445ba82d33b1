#!/usr/bin/env bash
# Builds OUTDIR/pkcs11-bridge.dll, the Windows PKCS#11 module that lets the Windows build reach SoftHSM2 under Wine (pkcs11-bridge/bridge.c says how).
# Usage: scripts/wine/build-bridge.sh OUTDIR. Needs gcc and winegcc (Debian: gcc, wine64-tools).
# Wine loads the result (an ELF file, despite the name) only when LoadLibrary is given its full
# path or it sits beside the exe. At run time PKCS11_BRIDGE_TARGET names the Linux module
# (default /usr/lib/softhsm/libsofthsm2.so).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
src=$(cd "$(dirname "$0")/pkcs11-bridge" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
cc=${CC:-gcc}
command -v "$cc" >/dev/null || { echo "build-bridge: $cc not found; install Debian's gcc" >&2; exit 1; }
winegcc=${WINEGCC:-}
if [ -z "$winegcc" ]; then
  # Debian installs winegcc outside PATH; winegcc-stable is its alternatives name.
  for w in /usr/lib/wine/winegcc /usr/bin/winegcc-stable "$(command -v winegcc || true)"; do
    [ -n "$w" ] && [ -x "$w" ] && { winegcc=$w; break; }
  done
fi
[ -n "$winegcc" ] && [ -x "$winegcc" ] || { echo "build-bridge: winegcc not found; install Debian's wine64-tools (or set WINEGCC)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Plain gcc, not winegcc: winegcc would define _WIN32 yet keep a 64-bit long, and the bridge
# must see the Linux types as they are. Compiling from inside $src keeps paths out of the binary.
(cd "$src" && "$cc" -O2 -fPIC -fvisibility=hidden -Wall -c bridge.c -o "$work/bridge.o")
cp "$src/bridge.spec" "$work/pkcs11-bridge.spec"
(cd "$work" && "$winegcc" -shared pkcs11-bridge.spec bridge.o -o pkcs11-bridge.dll -ldl -lpthread -s)
cp "$work/pkcs11-bridge.dll.so" "$out/pkcs11-bridge.dll"
