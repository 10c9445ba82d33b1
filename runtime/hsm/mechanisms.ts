// PKCS#11 mechanism and key-type numbers the driver uses, including the PKCS#11 3.0 Edwards
// constants that pkcs11js 2.1.7 lacks, and the names of the configurable wrap mechanisms.
import * as pkcs11 from 'pkcs11js';
import { ConfigError } from '../errors.js';
import type { RsaHash } from '../crypto/algorithms.js';

/** PKCS#11 3.0 values, absent from pkcs11js 2.1.7. */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;
/** Thales Luna's vendor id for RFC 5649 (key wrap with padding). */
export const CKM_AES_KWP_LUNA = 0x210b;

/** Wrap mechanisms by the name stored in each key row. */
export const WRAP_MECHANISMS: Readonly<Record<string, number>> = {
  'aes-key-wrap-pad': pkcs11.CKM_AES_KEY_WRAP_PAD, // RFC 5649, 0x210A
  'aes-kwp': CKM_AES_KWP_LUNA, // RFC 5649 under the vendor id some HSMs use
  'aes-key-wrap': pkcs11.CKM_AES_KEY_WRAP, // RFC 3394, 0x2109
};

export const DEFAULT_WRAP_MECHANISM = 'aes-key-wrap-pad';

/**
 * Accepts a wrap mechanism name or a numeric id ("0x210b"); returns the name stored in rows.
 * A known id given as a number is stored under its name, so rows stay comparable.
 */
export function parseWrapMechanism(value: string): string {
  const name = value.trim().toLowerCase();
  if (name in WRAP_MECHANISMS) return name;
  if (/^(0x[0-9a-f]+|[0-9]+)$/.test(name)) {
    const id = Number(name);
    const known = Object.entries(WRAP_MECHANISMS).find(([, v]) => v === id);
    return known ? known[0] : `0x${id.toString(16)}`;
  }
  throw new ConfigError(
    `unknown wrap mechanism "${value}": use ${Object.keys(WRAP_MECHANISMS).join(', ')} or a numeric id like 0x210b`,
  );
}

/** The mechanism number for a stored wrap mechanism name. */
export function wrapMechanismId(name: string): number {
  const known = WRAP_MECHANISMS[name];
  if (known !== undefined) return known;
  if (/^0x[0-9a-f]+$/.test(name)) return Number(name);
  throw new Error(`unknown wrap mechanism ${name}`);
}

/** Hash mechanisms and MGF1 variants for RSA-PSS, by protocol hash name. */
export const RSA_HASH: Readonly<Record<RsaHash, { pkcs1: number; pss: number; hashAlg: number; mgf: number; length: number }>> = {
  sha256: { pkcs1: pkcs11.CKM_SHA256_RSA_PKCS, pss: pkcs11.CKM_SHA256_RSA_PKCS_PSS, hashAlg: pkcs11.CKM_SHA256, mgf: pkcs11.CKG_MGF1_SHA256, length: 32 },
  sha384: { pkcs1: pkcs11.CKM_SHA384_RSA_PKCS, pss: pkcs11.CKM_SHA384_RSA_PKCS_PSS, hashAlg: pkcs11.CKM_SHA384, mgf: pkcs11.CKG_MGF1_SHA384, length: 48 },
  sha512: { pkcs1: pkcs11.CKM_SHA512_RSA_PKCS, pss: pkcs11.CKM_SHA512_RSA_PKCS_PSS, hashAlg: pkcs11.CKM_SHA512, mgf: pkcs11.CKG_MGF1_SHA512, length: 64 },
};

/** Mechanisms worth listing in `hsm list`, by name. */
export const LISTED_MECHANISMS: Readonly<Record<string, number>> = {
  CKM_EC_KEY_PAIR_GEN: pkcs11.CKM_EC_KEY_PAIR_GEN,
  CKM_ECDSA: pkcs11.CKM_ECDSA,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EDDSA,
  CKM_RSA_PKCS_KEY_PAIR_GEN: pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN,
  CKM_SHA256_RSA_PKCS: pkcs11.CKM_SHA256_RSA_PKCS,
  CKM_SHA256_RSA_PKCS_PSS: pkcs11.CKM_SHA256_RSA_PKCS_PSS,
  CKM_AES_KEY_GEN: pkcs11.CKM_AES_KEY_GEN,
  CKM_AES_KEY_WRAP: pkcs11.CKM_AES_KEY_WRAP,
  CKM_AES_KEY_WRAP_PAD: pkcs11.CKM_AES_KEY_WRAP_PAD,
  CKM_AES_KWP: CKM_AES_KWP_LUNA,
};
