// Turns the public parts a PKCS#11 token returns into SubjectPublicKeyInfo DER and the
// protocol's `publicKey` hex (PROTOCOL.md, keygen).

import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { ALGORITHM_SPECS, type Algorithm, type AlgorithmSpec, type EcCurve } from './algorithms.js';

const ED25519_KEY_BYTES = 32;

/** The spec of an ECDSA algorithm, or an error naming the wrong one. */
export function ecSpec(alg: Algorithm): Extract<AlgorithmSpec, { family: 'ecdsa' }> {
  const spec = ALGORITHM_SPECS[alg];
  if (spec.family !== 'ecdsa') throw new Error(`${alg} is not an ECDSA algorithm`);
  return spec;
}

/**
 * CKA_EC_POINT should be a DER OCTET STRING around the point, but some tokens return the
 * bare value: accept exactly those two shapes for a value of `size` bytes, nothing looser.
 * The lengths never collide (the wrapper adds two bytes, short form since size < 128).
 */
function unwrapOctetString(value: Buffer, size: number, what: string): Buffer {
  if (value.length === size) return value;
  if (value.length === size + 2 && value[0] === 0x04 && value[1] === size) return value.subarray(2);
  throw new Error(
    `${what}: expected ${size} bytes or a DER OCTET STRING of them, got ${value.length} bytes`,
  );
}

export function spkiFromEcPoint(alg: Algorithm, ecPoint: Buffer): Buffer {
  const { curve, size } = ecSpec(alg);
  const point = unwrapOctetString(ecPoint, 1 + 2 * size, `EC point for ${alg}`);
  // Compressed points (02/03) have another length and were refused above; only 04 remains.
  if (point[0] !== 0x04) throw new Error(`EC point for ${alg} is not an uncompressed SEC1 point`);
  const jwk: JsonWebKey = {
    kty: 'EC',
    crv: curve,
    x: point.subarray(1, 1 + size).toString('base64url'),
    y: point.subarray(1 + size).toString('base64url'),
  };
  let key: KeyObject;
  try {
    // OpenSSL refuses a point that is not on the curve, so a corrupt value stops here.
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new Error(`EC point for ${alg} is not a point on ${curve}`, { cause: err });
  }
  return key.export({ format: 'der', type: 'spki' });
}

export function spkiFromEd25519(ecPoint: Buffer): Buffer {
  const raw = unwrapOctetString(ecPoint, ED25519_KEY_BYTES, 'Ed25519 public key');
  try {
    // OpenSSL takes any 32 bytes as an Ed25519 key; decoding the point catches garbage now
    // rather than at the first signature.
    ed25519.Point.fromBytes(raw);
  } catch (err) {
    throw new Error('Ed25519 public key is not a valid curve point', { cause: err });
  }
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  return key.export({ format: 'der', type: 'spki' });
}

/** Big-endian unsigned integers may carry leading zero bytes; JWK (and OpenSSL's size) must not. */
function stripLeadingZeros(value: Buffer): Buffer {
  let i = 0;
  while (i < value.length && value[i] === 0) i++;
  return value.subarray(i);
}

export function spkiFromRsa(modulus: Buffer, publicExponent: Buffer): Buffer {
  const n = stripLeadingZeros(modulus);
  const e = stripLeadingZeros(publicExponent);
  if (n.length === 0 || ((n[n.length - 1] ?? 0) & 1) === 0) throw new Error('RSA modulus is zero or even');
  if (e.length === 0 || ((e[e.length - 1] ?? 0) & 1) === 0) throw new Error('RSA public exponent is zero or even');
  const jwk: JsonWebKey = { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') };
  let key: KeyObject;
  try {
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch (err) {
    throw new Error('RSA modulus and exponent do not form a public key', { cause: err });
  }
  return key.export({ format: 'der', type: 'spki' });
}

/** Parses SPKI DER, naming the problem instead of surfacing OpenSSL's decoder message. */
export function parseSpki(spki: Buffer): KeyObject {
  try {
    return createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new Error('public key is not a valid SubjectPublicKeyInfo DER', { cause: err });
  }
}

/** Node's JWK coordinates are full width today; padding keeps a leading zero from ever shortening them. */
function fixed(b64url: string | undefined, size: number): Buffer {
  const bytes = Buffer.from(b64url ?? '', 'base64url');
  if (bytes.length > size) throw new Error('EC coordinate is longer than the curve size');
  return Buffer.concat([Buffer.alloc(size - bytes.length), bytes]);
}

/** Stored public keys seen by recent signs: parsing one through OpenSSL costs more than the lookup. */
const pointCache = new Map<string, Buffer>();
const POINT_CACHE_SIZE = 4096;

/**
 * The SEC1 uncompressed point (04||x||y) of an EC SPKI, checked to be on `curve`. The same SPKI
 * gives the same Buffer while it is cached, so callers may key their own caches on it.
 */
export function ecPointFromSpki(spki: Buffer, curve: EcCurve, size: number): Buffer {
  const cacheKey = `${curve}:${spki.toString('base64')}`;
  let point = pointCache.get(cacheKey);
  if (!point) {
    point = parseEcPoint(spki, curve, size);
    if (pointCache.size >= POINT_CACHE_SIZE) pointCache.clear();
    pointCache.set(cacheKey, point);
  }
  return point;
}

function parseEcPoint(spki: Buffer, curve: EcCurve, size: number): Buffer {
  const key = parseSpki(spki);
  const named = key.asymmetricKeyType === 'ec' ? key.asymmetricKeyDetails?.namedCurve : undefined;
  // Node reports the OpenSSL short names for the NIST curves.
  const expected = { secp256k1: 'secp256k1', 'P-256': 'prime256v1', 'P-384': 'secp384r1' }[curve];
  if (named !== expected) throw new Error(`public key is not an EC ${curve} key`);
  const jwk = key.export({ format: 'jwk' });
  return Buffer.concat([Buffer.of(0x04), fixed(jwk.x, size), fixed(jwk.y, size)]);
}

export function publicKeyHex(alg: Algorithm, spki: Buffer): string | undefined {
  const spec = ALGORITHM_SPECS[alg];
  switch (spec.family) {
    case 'ecdsa':
      return ecPointFromSpki(spki, spec.curve, spec.size).toString('hex');
    case 'eddsa': {
      const key = parseSpki(spki);
      if (key.asymmetricKeyType !== 'ed25519') throw new Error('public key is not an Ed25519 key');
      return fixed(key.export({ format: 'jwk' }).x, ED25519_KEY_BYTES).toString('hex');
    }
    case 'rsa': {
      // The protocol has no `publicKey` for RSA, but a wrong key type is still an error here.
      const key = parseSpki(spki);
      if (key.asymmetricKeyType !== 'rsa') throw new Error('public key is not an RSA key');
      const bits = key.asymmetricKeyDetails?.modulusLength;
      if (bits !== spec.modulusBits) throw new Error(`public key is RSA-${bits}, not ${alg}`);
      return undefined;
    }
  }
}
