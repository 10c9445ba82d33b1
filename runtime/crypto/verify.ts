// Checks a token's signature against the stored public key in software before it is
// returned (PROTOCOL.md: a failure is KEY_INTEGRITY), independently of the token.

import { constants, verify, type KeyObject } from 'node:crypto';
import type { EcCurve, RsaHash } from './algorithms.js';
import { NOBLE_CURVES } from './ecdsa.js';
import { ecPointFromSpki, parseSpki } from './public-key.js';

export type VerifyRequest =
  | {
      family: 'ecdsa';
      spki: Buffer;
      /** What the token was given for CKM_ECDSA: the data itself or its full hash. */
      digest: Buffer;
      /** r‖s, each the curve size; high or low s both verify. */
      signature: Buffer;
    }
  | { family: 'eddsa'; spki: Buffer; message: Buffer; signature: Buffer }
  | {
      family: 'rsa';
      spki: Buffer;
      message: Buffer;
      hash: RsaHash;
      /** pss: salt = hash length, MGF1 with the same hash. */
      padding: 'pss' | 'pkcs1';
      signature: Buffer;
    };

// Node's names for the curves (asymmetricKeyDetails.namedCurve) mapped to ours.
const CURVE_OF: Readonly<Record<string, EcCurve>> = {
  secp256k1: 'secp256k1',
  prime256v1: 'P-256',
  secp384r1: 'P-384',
};

/**
 * True only if `signature` verifies. A malformed signature is false; a SPKI that is not a key
 * of the request's family throws, since that is a broken stored key, not a bad signature.
 */
export function verifySignature(req: VerifyRequest): boolean {
  const key = parseSpki(req.spki);
  switch (req.family) {
    case 'ecdsa':
      return verifyEcdsa(key, req.spki, req.digest, req.signature);
    case 'eddsa':
      if (key.asymmetricKeyType !== 'ed25519') throw new Error('public key is not an Ed25519 key');
      return safely(() => verify(null, req.message, key, req.signature));
    case 'rsa': {
      if (key.asymmetricKeyType !== 'rsa') throw new Error('public key is not an RSA key');
      const options =
        req.padding === 'pss'
          ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
          : { key, padding: constants.RSA_PKCS1_PADDING };
      return safely(() => verify(req.hash, req.message, options, req.signature));
    }
  }
}

/**
 * Node cannot verify ECDSA over a ready digest: verify(null, …) on an EC key hashes the
 * input with SHA-256 first (checked on Node 24 / OpenSSL 3.0). So the arithmetic is done by
 * @noble/curves with prehash off, which truncates a long digest to the leftmost bits as
 * CKM_ECDSA does. The key's point comes from OpenSSL's parse of the stored SPKI.
 */
function verifyEcdsa(key: KeyObject, spki: Buffer, digest: Buffer, signature: Buffer): boolean {
  const named = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  const curve = named === undefined ? undefined : CURVE_OF[named];
  if (curve === undefined) throw new Error(`public key is not an EC key on a supported curve`);
  const noble = NOBLE_CURVES[curve];
  const size = noble.Point.Fn.BYTES;
  if (signature.length !== 2 * size || digest.length === 0) return false;
  const point = ecPointFromSpki(spki, curve, size);
  return safely(() =>
    noble.verify(signature, digest, point, { prehash: false, lowS: false, format: 'compact' }),
  );
}

/** OpenSSL throws on some malformed signatures (wrong length, bad encoding): that is "no". */
function safely(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}
