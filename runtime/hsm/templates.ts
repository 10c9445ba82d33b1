// Typed key specs turned into PKCS#11 attribute templates, in one place, so the security
// posture of every object the driver creates can be read on one screen.
import * as pkcs11 from 'pkcs11js';
import { ALGORITHM_SPECS, type Algorithm } from '../crypto/algorithms.js';
import { CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN } from './mechanisms.js';

export interface KeyPairSpec {
  mechanism: pkcs11.Mechanism;
  publicTemplate: pkcs11.Template;
  privateTemplate: pkcs11.Template;
}

/** How a generated private key will be kept. */
export type KeepMode =
  /** A session object, extractable only so it can be wrapped once, then destroyed. */
  | { mode: 'wrapped' }
  /** A token object that never leaves the HSM; found again by CKA_ID. */
  | { mode: 'resident'; id: Buffer; label: string; probeOnly?: boolean };

export function keyTypeOf(algorithm: Algorithm): number {
  const spec = ALGORITHM_SPECS[algorithm];
  if (spec.family === 'rsa') return pkcs11.CKK_RSA;
  return spec.family === 'eddsa' ? CKK_EC_EDWARDS : pkcs11.CKK_EC;
}

export function keyPairSpec(algorithm: Algorithm, keep: KeepMode): KeyPairSpec {
  const spec = ALGORITHM_SPECS[algorithm];
  const resident = keep.mode === 'resident';
  // The public half is only read once for its value, so it is always a session object.
  const publicTemplate: pkcs11.Template = [
    { type: pkcs11.CKA_TOKEN, value: false },
    { type: pkcs11.CKA_PRIVATE, value: false },
    { type: pkcs11.CKA_VERIFY, value: true },
  ];
  const privateTemplate: pkcs11.Template = [
    // A probe gets the resident posture as a session object, so nothing can be left behind.
    { type: pkcs11.CKA_TOKEN, value: resident && !keep.probeOnly },
    { type: pkcs11.CKA_PRIVATE, value: true },
    { type: pkcs11.CKA_SENSITIVE, value: true },
    // Wrapping needs EXTRACTABLE; the wrapped copy is the only one that outlives the session.
    { type: pkcs11.CKA_EXTRACTABLE, value: !resident },
    { type: pkcs11.CKA_SIGN, value: true },
    { type: pkcs11.CKA_DECRYPT, value: false },
    { type: pkcs11.CKA_UNWRAP, value: false },
    { type: pkcs11.CKA_DERIVE, value: false },
  ];
  if (resident) {
    privateTemplate.push({ type: pkcs11.CKA_ID, value: keep.id }, { type: pkcs11.CKA_LABEL, value: keep.label });
  }
  switch (spec.family) {
    case 'ecdsa':
      publicTemplate.push({ type: pkcs11.CKA_EC_PARAMS, value: spec.ecParams });
      return { mechanism: { mechanism: pkcs11.CKM_EC_KEY_PAIR_GEN }, publicTemplate, privateTemplate };
    case 'eddsa':
      publicTemplate.push({ type: pkcs11.CKA_EC_PARAMS, value: spec.ecParams });
      return { mechanism: { mechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN }, publicTemplate, privateTemplate };
    case 'rsa':
      publicTemplate.push(
        { type: pkcs11.CKA_MODULUS_BITS, value: spec.modulusBits },
        { type: pkcs11.CKA_PUBLIC_EXPONENT, value: Buffer.from([0x01, 0x00, 0x01]) },
      );
      return { mechanism: { mechanism: pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN }, publicTemplate, privateTemplate };
  }
}

/**
 * Template for a key unwrapped to sign one job. Every security attribute is explicit: a token
 * given no template makes the key non-sensitive and usable for decrypt/unwrap (FINDINGS.md),
 * and pkcs11js cannot set CKA_UNWRAP_TEMPLATE on the master key to force it.
 * CKA_EC_PARAMS is left out: the PKCS#8 blob carries the curve.
 */
export function unwrapTemplate(algorithm: Algorithm): pkcs11.Template {
  return [
    { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PRIVATE_KEY },
    { type: pkcs11.CKA_KEY_TYPE, value: keyTypeOf(algorithm) },
    { type: pkcs11.CKA_TOKEN, value: false },
    { type: pkcs11.CKA_PRIVATE, value: true },
    { type: pkcs11.CKA_SENSITIVE, value: true },
    { type: pkcs11.CKA_EXTRACTABLE, value: false },
    { type: pkcs11.CKA_SIGN, value: true },
    { type: pkcs11.CKA_DECRYPT, value: false },
    { type: pkcs11.CKA_UNWRAP, value: false },
    { type: pkcs11.CKA_DERIVE, value: false },
  ];
}

/**
 * For `keys rewrap` only: the stored key unwrapped so that it can be wrapped once more, under
 * the new master key, and destroyed at once. Still sensitive (its value never readable) and
 * unable to sign, like the extractable private key keygen wraps once.
 */
export function rewrapTemplate(algorithm: Algorithm): pkcs11.Template {
  return unwrapTemplate(algorithm).map((a) =>
    a.type === pkcs11.CKA_EXTRACTABLE ? { ...a, value: true } : a.type === pkcs11.CKA_SIGN ? { ...a, value: false } : a,
  );
}

/** Finds a resident private key by its CKA_ID. */
export function residentKeyQuery(id: Buffer): pkcs11.Template {
  return [
    { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PRIVATE_KEY },
    { type: pkcs11.CKA_TOKEN, value: true },
    { type: pkcs11.CKA_ID, value: id },
  ];
}

/** Finds the master key by label. */
export function masterKeyQuery(label: string): pkcs11.Template {
  return [
    { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_SECRET_KEY },
    { type: pkcs11.CKA_LABEL, value: label },
  ];
}
