#!/usr/bin/env bash
# Installs the system packages the tests, the demo and the single-binary builds need when they
# are missing; a no-op on a machine that has them:
#   SoftHSM2, OpenSC tools, openssl          the dev token and the tests' checks
#   jq, curl                                 the runbook's commands (docs/runbook.md, run by its test)
#   g++, binutils (objdump)                  the Linux pkcs11js addon and its glibc check
#   mingw-w64 (posix threads), its binutils  the Windows addons of hsm-driver-win-x64.exe
#   wine64, wine64-tools (winegcc)           running the Windows exe in tests, the PKCS#11 bridge
#   podman, runc                             running the container image in tests (rootful; runc
#                                            because crun refuses this sandbox's hybrid cgroups)
set -euo pipefail
need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v objdump >/dev/null 2>&1 || need+=(binutils)
command -v x86_64-w64-mingw32-g++-posix >/dev/null 2>&1 || need+=(g++-mingw-w64-x86-64-posix)
command -v x86_64-w64-mingw32-dlltool >/dev/null 2>&1 || need+=(binutils-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || need+=(wine64)
[ -x /usr/lib/wine/winegcc ] || need+=(wine64-tools)
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
