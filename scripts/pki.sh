#!/usr/bin/env bash
# Makes the mutual-TLS test PKI of the runbook in DIR: API root CA, server certificate, the
# customer intermediate (key + CSR signed by the API root), driver leaves with chain files,
# and a "rogue" client with its own CA for negative tests.
#
#   scripts/pki.sh DIR [DRIVER_NAME ...]      names default to "driver"
#
# For each NAME: NAME.key (0600), NAME.pem (leaf, clientAuth, CN=NAME) and NAME-chain.pem
# (leaf then intermediate: what a driver presents). The server trusts api-ca.pem only, so a
# driver that sends its leaf without the intermediate is refused.
#
# Idempotent: keys are never replaced; a certificate is only made again when it is missing,
# no longer verifies against its issuer (the issuer was remade) or expires within a day, so
# a directory can be reused across runs and stays consistent. EC P-256 keys, 30-day validity.
set -euo pipefail
[ $# -ge 1 ] && [ -n "$1" ] || { echo "usage: scripts/pki.sh DIR [DRIVER_NAME ...]" >&2; exit 2; }
dir=$(mkdir -p "$1" && cd "$1" && pwd)
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(driver)
reserved=" api-ca server customer-ca rogue rogue-ca "
for name in "${names[@]}"; do
  # Names become file names and CNs: no paths, and none that would overwrite the fixed files.
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || { echo "pki.sh: bad driver name: $name" >&2; exit 2; }
  [[ "$reserved" != *" $name "* ]] || { echo "pki.sh: reserved name: $name" >&2; exit 2; }
done

days=30
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Our own config, so the system openssl.cnf (whose defaults differ between distributions)
# adds no extensions of its own.
cat > "$work/ext.cnf" <<'CNF'
[req]
distinguished_name = dn
[dn]
[root_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[intermediate_ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
# Client certificates only: without this EKU the customer's CA, which chains to the root the
# drivers trust for the job API, could issue a server certificate for the API's host name.
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF

# key FILE: an EC P-256 private key, created 0600 from the start (umask), kept if present.
key() {
  [ -s "$dir/$1" ] || (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$1" 2>/dev/null)
  chmod 0600 "$dir/$1"
}

# fresh CERT ISSUER [UNTRUSTED]: true when CERT exists, chains to ISSUER and is valid for a day more.
fresh() {
  [ -s "$dir/$1" ] || return 1
  openssl x509 -in "$dir/$1" -noout -checkend 86400 >/dev/null 2>&1 || return 1
  openssl verify -CAfile "$dir/$2" ${3:+-untrusted "$dir/$3"} "$dir/$1" >/dev/null 2>&1
}

# self_signed NAME SUBJECT: NAME.key + NAME.pem, a root CA.
self_signed() {
  key "$1.key"
  fresh "$1.pem" "$1.pem" && return 0
  openssl req -x509 -new -key "$dir/$1.key" -subj "$2" -days "$days" -sha256 \
    -config "$work/ext.cnf" -extensions root_ca -set_serial "0x$(openssl rand -hex 16)" -out "$dir/$1.pem"
}

# sign CSR OUT ISSUER SECTION: OUT signed by ISSUER.pem/ISSUER.key with the [SECTION] extensions.
sign() {
  openssl x509 -req -in "$1" -CA "$dir/$3.pem" -CAkey "$dir/$3.key" -days "$days" -sha256 \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$work/ext.cnf" -extensions "$4" -out "$dir/$2" 2>/dev/null
}

# leaf NAME SUBJECT ISSUER SECTION [ROOT]: NAME.key + NAME.pem signed by ISSUER.
leaf() {
  key "$1.key"
  fresh "$1.pem" "${5:-$3.pem}" "${5:+$3.pem}" && return 0
  openssl req -new -key "$dir/$1.key" -subj "$2" -config "$work/ext.cnf" -out "$work/$1.csr"
  sign "$work/$1.csr" "$1.pem" "$3" "$4"
}

# API side: the root that the job server trusts for clients, and the server's own certificate.
self_signed api-ca "/O=hsm-driver test/CN=hsm-driver API root CA"
leaf server "/O=hsm-driver test/CN=localhost" api-ca server

# Customer side: the customer makes the intermediate key and CSR; the API root signs it as a
# CA that may only sign leaves (pathlen:0). The CSR is kept as the runbook hands it over.
key customer-ca.key
if [ ! -s "$dir/customer-ca.csr" ] || ! openssl req -in "$dir/customer-ca.csr" -noout -verify >/dev/null 2>&1 ||
  [ "$(openssl req -in "$dir/customer-ca.csr" -noout -pubkey)" != "$(openssl pkey -in "$dir/customer-ca.key" -pubout)" ]; then
  openssl req -new -key "$dir/customer-ca.key" -subj "/O=hsm-driver test customer/CN=customer intermediate CA" \
    -config "$work/ext.cnf" -out "$dir/customer-ca.csr"
fi
# An intermediate made before it was limited to clientAuth is made again (same key: leaves stay).
{ fresh customer-ca.pem api-ca.pem &&
  openssl x509 -in "$dir/customer-ca.pem" -noout -ext extendedKeyUsage 2>/dev/null | grep -q 'TLS Web Client Authentication'; } ||
  sign "$dir/customer-ca.csr" customer-ca.pem api-ca intermediate_ca

for name in "${names[@]}"; do
  leaf "$name" "/O=hsm-driver test customer/CN=$name" customer-ca client api-ca.pem
  chain=$(cat "$dir/$name.pem" "$dir/customer-ca.pem")
  [ -s "$dir/$name-chain.pem" ] && [ "$(cat "$dir/$name-chain.pem")" = "$chain" ] || printf '%s\n' "$chain" > "$dir/$name-chain.pem"
done

# Rogue: a well-formed client certificate from a CA the server does not trust.
self_signed rogue-ca "/O=rogue/CN=rogue CA"
leaf rogue "/O=rogue/CN=rogue" rogue-ca client

chmod 0644 "$dir"/*.pem "$dir"/*.csr
chmod 0600 "$dir"/*.key
