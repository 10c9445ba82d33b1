// Test helpers: software keys from node:crypto standing in for a token's key pairs, and the
// raw PKCS#11 shapes (CKA_EC_POINT, r‖s) a token would hand back for them.

import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { ALGORITHM_SPECS } from '../../../runtime/crypto/algorithms.js';

export const EC_ALGS = ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384'] as const;
export type EcAlg = (typeof EC_ALGS)[number];

/** Group orders, written out here rather than taken from the code under test. */
export const ORDER: Readonly<Record<EcAlg, bigint>> = {
  'ecdsa-secp256k1': 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
  'ecdsa-p256': 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  'ecdsa-p384':
    0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
};

export const SIZE: Readonly<Record<EcAlg, 32 | 48>> = {
  'ecdsa-secp256k1': 32,
  'ecdsa-p256': 32,
  'ecdsa-p384': 48,
};

export interface EcKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  spki: Buffer;
  /** SEC1 uncompressed point, as a token returns it unwrapped. */
  point: Buffer;
  /** CKA_EC_POINT as the standard says: DER OCTET STRING around the point. */
  ecPoint: Buffer;
  /** Private scalar, for signing with @noble/curves in recovery tests. */
  d: Buffer;
}

export function ecKey(alg: EcAlg): EcKey {
  const spec = ALGORITHM_SPECS[alg];
  if (spec.family !== 'ecdsa') throw new Error('not EC');
  const namedCurve = { secp256k1: 'secp256k1', 'P-256': 'prime256v1', 'P-384': 'secp384r1' }[spec.curve];
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });
  const jwk = privateKey.export({ format: 'jwk' });
  const coord = (v: string | undefined) => {
    const b = Buffer.from(v ?? '', 'base64url');
    return Buffer.concat([Buffer.alloc(spec.size - b.length), b]);
  };
  const point = Buffer.concat([Buffer.of(4), coord(jwk.x), coord(jwk.y)]);
  return {
    privateKey,
    publicKey,
    spki: publicKey.export({ format: 'der', type: 'spki' }),
    point,
    ecPoint: Buffer.concat([Buffer.of(0x04, point.length), point]),
    d: coord(jwk.d),
  };
}

/**
 * r‖s over hash(message) from OpenSSL, which like CKM_ECDSA truncates a long hash to the
 * leftmost bits and does not normalise s: about half come out high.
 */
export function signRs(key: EcKey, hash: 'sha256' | 'sha384' | 'sha512', message: Buffer): Buffer {
  return sign(hash, message, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
}

export function split(rs: Buffer, size: number): { r: bigint; s: bigint } {
  return {
    r: BigInt('0x' + rs.subarray(0, size).toString('hex')),
    s: BigInt('0x' + rs.subarray(size).toString('hex')),
  };
}

export function toFixedHex(value: bigint, size: number): string {
  return value.toString(16).padStart(2 * size, '0');
}

/** Minimal strict DER reader for ECDSA-Sig-Value, so the check does not reuse our encoder. */
export function decodeDerSig(der: Buffer): { r: bigint; s: bigint } {
  if (der[0] !== 0x30 || der[1] !== der.length - 2) throw new Error('bad SEQUENCE');
  const ints: bigint[] = [];
  let i = 2;
  while (i < der.length) {
    const len = der[i + 1] ?? 0;
    if (der[i] !== 0x02 || len === 0 || i + 2 + len > der.length) throw new Error('bad INTEGER');
    const body = der.subarray(i + 2, i + 2 + len);
    if ((body[0] ?? 0) & 0x80) throw new Error('negative INTEGER');
    if (len > 1 && body[0] === 0 && ((body[1] ?? 0) & 0x80) === 0) throw new Error('non-minimal INTEGER');
    ints.push(BigInt('0x' + body.toString('hex')));
    i += 2 + len;
  }
  const [r, s] = ints;
  if (ints.length !== 2 || r === undefined || s === undefined) throw new Error('expected two INTEGERs');
  return { r, s };
}
