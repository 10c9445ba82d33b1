// Turns the r‖s a token returns for CKM_ECDSA into the protocol's ECDSA sign output:
// low-s r‖s, DER, r, s and (secp256k1, P-256) the recovery id (PROTOCOL.md, sign).

import { secp256k1 } from '@noble/curves/secp256k1.js';
import * as libsecp256k1 from 'tiny-secp256k1';
import { p256, p384 } from '@noble/curves/nist.js';
import type { ECDSA } from '@noble/curves/abstract/weierstrass.js';
import type { Algorithm, EcCurve } from './algorithms.js';
import { ecPointFromSpki, ecSpec } from './public-key.js';

export const NOBLE_CURVES: Readonly<Record<EcCurve, ECDSA>> = {
  secp256k1,
  'P-256': p256,
  'P-384': p384,
};

export interface EcdsaSignatureOutput {
  /** r‖s, each the curve size, s in low form. */
  signature: string;
  /** DER ECDSA-Sig-Value of the same (r, s). */
  der: string;
  r: string;
  s: string;
  /** Present for secp256k1 and P-256 only. */
  recoveryId?: 0 | 1;
}

/**
 * No recovery id rebuilt the stored public key: the token signed with another key or over
 * another digest. A class of its own so the caller can map it to KEY_INTEGRITY without
 * reading messages.
 */
export class EcdsaRecoveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EcdsaRecoveryError';
  }
}

/**
 * `digest` is what the token was given (CKM_ECDSA signs it as-is); a digest longer than the
 * curve is truncated to its leftmost bits by both the token and noble's bits2int, so the
 * full hash goes in here, not a pre-cut one.
 */
export function formatEcdsaSignature(
  alg: Algorithm,
  rawRs: Buffer,
  digest: Buffer,
  spki: Buffer,
): EcdsaSignatureOutput {
  const { curve, size, recoverable } = ecSpec(alg);
  if (rawRs.length !== 2 * size) {
    throw new Error(`ECDSA signature for ${alg} must be ${2 * size} bytes (r‖s), got ${rawRs.length}`);
  }
  if (digest.length === 0) throw new Error('ECDSA digest is empty');
  const noble = NOBLE_CURVES[curve];
  const n = noble.Point.Fn.ORDER;
  const r = BigInt('0x' + rawRs.subarray(0, size).toString('hex'));
  let s = BigInt('0x' + rawRs.subarray(size).toString('hex'));
  if (r <= 0n || r >= n || s <= 0n || s >= n) throw new Error(`ECDSA r or s out of range for ${curve}`);
  // (r, n − s) is the same signature for the verifier; the protocol asks for the low form on
  // every curve, not only secp256k1, so there is one answer per signature.
  if (s > n / 2n) s = n - s;
  const sig = new noble.Signature(r, s);

  const out: EcdsaSignatureOutput = {
    signature: Buffer.from(sig.toBytes('compact')).toString('hex'),
    der: Buffer.from(sig.toBytes('der')).toString('hex'),
    r: Buffer.from(noble.Point.Fn.toBytes(r)).toString('hex'),
    s: Buffer.from(noble.Point.Fn.toBytes(s)).toString('hex'),
  };
  if (recoverable) {
    out.recoveryId = recoveryId(sig, digest, ecPointFromSpki(spki, curve, size), alg, noble);
  }
  return out;
}

/**
 * Verifies the low-s signature against the stored key and reads the recovery id off the same
 * arithmetic: R = u1·G + u2·Q is exactly the point recovery would rebuild, so the id is R.y's
 * parity (as noble's own verify of a 'recovered' signature does). One double multiplication
 * instead of up to two full recoveries: this runs on the event loop for every sign job. Ids 2
 * and 3 (R.x ≥ n) happen with probability ~2^-128 on these curves and the protocol has no room
 * for them, so they count as a mismatch.
 */
function recoveryId(
  sig: InstanceType<ECDSA['Signature']>,
  digest: Buffer,
  expectedPoint: Buffer,
  alg: Algorithm,
  noble: ECDSA,
): 0 | 1 {
  const mismatch = () => new EcdsaRecoveryError(`${alg} signature does not verify against the stored public key`);
  if (alg === 'ecdsa-secp256k1' && digest.length === 32) {
    // libsecp256k1 (WebAssembly) recovers a key in ~0.3 ms against noble's ~1.3 ms double
    // multiplication. The recovered key equals the stored one only if the signature verifies
    // against it, so this is the verification, and the id that rebuilt it is the answer.
    const compact = sig.toBytes('compact');
    for (const id of [0, 1] as const) {
      const Q = libsecp256k1.recover(digest, compact, id, false);
      if (Q && Buffer.from(Q.buffer, Q.byteOffset, Q.byteLength).equals(expectedPoint)) return id;
    }
    throw mismatch();
  }
  const { Point } = noble;
  const Fn = Point.Fn;
  let R: ReturnType<typeof Point.fromBytes>;
  try {
    const Q = storedPoint(noble, expectedPoint);
    const sInv = Fn.inv(sig.s);
    const u1 = Fn.create(digestToScalar(digest, Fn.BITS) * sInv);
    const u2 = Fn.create(sig.r * sInv);
    // A key seen before has window tables (like the base point's): two table walks beat one
    // shared doubling chain by about 4×. A first-time key takes the chain.
    R = Q.tables ? Point.BASE.multiplyUnsafe(u1).add(Q.point.multiplyUnsafe(u2)) : Point.BASE.mulAddUnsafe(u1, Q.point, u2);
  } catch {
    throw mismatch();
  }
  if (R.is0()) throw mismatch();
  const { x, y } = R.toAffine();
  if (x >= Fn.ORDER || Fn.create(x) !== sig.r) throw mismatch();
  return (y & 1n) === 1n ? 1 : 0;
}

/**
 * Decoded stored keys, and which have precomputed window tables (from their second sign on:
 * ~50 KB and a few ms each, so only for keys that sign again, and only so many of them). Keyed
 * by the point Buffer ecPointFromSpki caches, so a sign encodes nothing to find its entry.
 */
const storedPoints = new Map<Buffer, { point: ReturnType<ECDSA['Point']['fromBytes']>; tables: boolean }>();
const STORED_POINTS = 256;
const TABLE_WINDOW = 4;

function storedPoint(noble: ECDSA, bytes: Buffer): { point: ReturnType<ECDSA['Point']['fromBytes']>; tables: boolean } {
  let entry = storedPoints.get(bytes);
  if (entry && !entry.tables) {
    entry.point.precompute(TABLE_WINDOW, false);
    entry.tables = true;
  }
  if (!entry) {
    if (storedPoints.size >= STORED_POINTS) storedPoints.clear();
    entry = { point: noble.Point.fromBytes(bytes), tables: false };
    storedPoints.set(bytes, entry);
  }
  return entry;
}

/** ECDSA's bits2int: the leftmost bits of the digest, as many as the order has (SEC 1 4.1.3). */
function digestToScalar(digest: Buffer, orderBits: number): bigint {
  const z = BigInt(`0x${digest.toString('hex')}`);
  const extra = digest.length * 8 - orderBits;
  return extra > 0 ? z >> BigInt(extra) : z;
}
