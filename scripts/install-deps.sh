#!/usr/bin/env bash
# Installs the system packages the tests, the demo and the single-binary build need (SoftHSM2,
# OpenSC tools, openssl; g++ for the pkcs11js addon, binutils' objdump for the glibc check)
# when they are missing; a no-op on a machine that has them.
set -euo pipefail
need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v objdump >/dev/null 2>&1 || need+=(binutils)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
