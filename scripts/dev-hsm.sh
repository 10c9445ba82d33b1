#!/usr/bin/env bash
# Makes a SoftHSM2 development token with an AES-256 master key and an HMAC integrity key in its own directory and
# writes an env file for the driver. Idempotent: an existing token is kept.
#
#   scripts/dev-hsm.sh [DIR]        DIR defaults to .dev/softhsm
#   MASTER_KEY_CEREMONY=public scripts/dev-hsm.sh DIR
#        makes the master key without --private (CKA_PRIVATE=false), the weak posture
#        FINDINGS.md warns about, so tests can check that the driver warns.
#   MASTER_KEY_VALUE=HEX INTEGRITY_KEY_VALUE=HEX scripts/dev-hsm.sh DIR
#        imports keys of these values (32 bytes each, hex) instead of generating them inside
#        the token (scripts/dev-hsm-import-key.mjs): two tokens made with the same values hold
#        copies of one master key, as a replacement HSM would after a vendor backup/restore.
#        Tests only (DR drill); either may be given alone.
#
# The PINs are random and written to 0600 files; pkcs11-tool and softhsm2-util take them on
# their command line because they have no other non-interactive way (dev tokens only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mkdir -p "${1:-$here/../.dev/softhsm}" && cd "${1:-$here/../.dev/softhsm}" && pwd)
label=${TOKEN_LABEL:-hsm-driver-dev}
master=${MASTER_KEY_LABEL:-master}
module=${PKCS11_MODULE:-}
"$here/install-deps.sh"
if [ -z "$module" ]; then
  for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -f "$m" ] && module=$m && break
  done
fi
[ -n "$module" ] || { echo "dev-hsm: libsofthsm2.so not found; set PKCS11_MODULE" >&2; exit 1; }

chmod 0700 "$dir"
mkdir -p "$dir/tokens"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$dir/softhsm2.conf"

umask 077
[ -s "$dir/user.pin" ] || od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$dir/user.pin"
[ -s "$dir/so.pin" ] || od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$dir/so.pin"
pin=$(cat "$dir/user.pin")

if ! softhsm2-util --show-slots 2>/dev/null | grep -Eq "Label:[[:space:]]*$label[[:space:]]*\$"; then
  softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$(cat "$dir/so.pin")" >/dev/null
fi

p11() { pkcs11-tool --module "$module" --token-label "$label" --login --pin "$pin" "$@"; }
# KEY_VALUE reaches the script through its environment, never a command line.
import_key() { # KIND LABEL ID VALUE
  MODULE=$module TOKEN_LABEL=$label PIN_FILE=$dir/user.pin KEY_KIND=$1 KEY_LABEL=$2 KEY_ID=$3 KEY_VALUE=$4 \
    KEY_PUBLIC=$([ "${MASTER_KEY_CEREMONY:-}" = public ] && [ "$1" = master ] && echo 1 || echo 0) \
    node "$here/dev-hsm-import-key.mjs"
}
if ! p11 --list-objects --type secrkey 2>/dev/null | grep -Eq "label:[[:space:]]*$master[[:space:]]*\$"; then
  private=--private
  [ "${MASTER_KEY_CEREMONY:-}" = public ] && private=
  if [ -n "${MASTER_KEY_VALUE:-}" ]; then
    import_key master "$master" 01 "$MASTER_KEY_VALUE"
  else
    # shellcheck disable=SC2086
    p11 --keygen --key-type AES:32 --label "$master" --id 01 --usage-wrap --sensitive $private >/dev/null 2>&1
  fi
fi

# The integrity key (HMAC-SHA256 seals of audit records and key rows): a sensitive,
# never-extractable generic secret, made beside the master key at the ceremony.
integrity=${INTEGRITY_KEY_LABEL:-integrity}
if ! p11 --list-objects --type secrkey 2>/dev/null | grep -Eq "label:[[:space:]]*$integrity[[:space:]]*\$"; then
  if [ -n "${INTEGRITY_KEY_VALUE:-}" ]; then
    import_key integrity "$integrity" 03 "$INTEGRITY_KEY_VALUE"
  else
    p11 --keygen --key-type GENERIC:32 --label "$integrity" --id 03 --usage-sign --sensitive --private >/dev/null 2>&1
  fi
fi

cat > "$dir/env" <<ENV
export SOFTHSM2_CONF=$dir/softhsm2.conf
export PKCS11_MODULE=$module
export TOKEN_LABEL=$label
export MASTER_KEY_LABEL=$master
export INTEGRITY_KEY_LABEL=$integrity
export USER_PIN_FILE=$dir/user.pin
ENV
echo "$dir/env"
