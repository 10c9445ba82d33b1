// ECDSA output shaping: low-s on every curve, DER, fixed-width r‖s, and recovery ids checked
// against OpenSSL, an independent DER reader, noble's signer and a published Ethereum vector.

import { createHash, verify } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { p256 } from '@noble/curves/nist.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { describe, expect, it } from 'vitest';
import { EcdsaRecoveryError, formatEcdsaSignature } from '../../../runtime/crypto/ecdsa.js';
import { spkiFromEcPoint } from '../../../runtime/crypto/public-key.js';
import { decodeDerSig, EC_ALGS, ecKey, ORDER, signRs, SIZE, split, toFixedHex } from './keys.js';

const HASHES = ['sha256', 'sha384', 'sha512'] as const;

describe('formatEcdsaSignature', () => {
  for (const alg of EC_ALGS) {
    const n = ORDER[alg];
    const size = SIZE[alg];
    const key = ecKey(alg);

    it(`${alg}: a high-s signature comes out as (r, n − s), still valid, DER the same`, () => {
      const msg = Buffer.from(`high-s ${alg}`);
      let rs = signRs(key, 'sha256', msg);
      // OpenSSL does not normalise s, so half its signatures are high: sign until one is.
      for (let i = 0; split(rs, size).s <= n / 2n; i++) {
        if (i > 200) throw new Error('no high-s signature in 200 tries');
        rs = signRs(key, 'sha256', msg);
      }
      const { r, s } = split(rs, size);
      const digest = createHash('sha256').update(msg).digest();
      const out = formatEcdsaSignature(alg, rs, digest, key.spki);

      expect(out.r).toBe(toFixedHex(r, size));
      expect(out.s).toBe(toFixedHex(n - s, size));
      expect(BigInt('0x' + out.s) <= n / 2n).toBe(true);
      expect(out.signature).toBe(out.r + out.s);
      expect(out.signature).toMatch(/^[0-9a-f]+$/);
      expect(out.signature.length).toBe(4 * size);
      expect(decodeDerSig(Buffer.from(out.der, 'hex'))).toEqual({ r, s: n - s });
      // OpenSSL accepts the low-s form in both encodings.
      const der = Buffer.from(out.der, 'hex');
      const p1363 = Buffer.from(out.signature, 'hex');
      expect(verify('sha256', msg, { key: key.publicKey, dsaEncoding: 'der' }, der)).toBe(true);
      expect(verify('sha256', msg, { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, p1363)).toBe(true);
      expect(out.recoveryId === undefined).toBe(alg === 'ecdsa-p384');
    });

    it(`${alg}: a low-s signature passes unchanged, for every hash length`, () => {
      for (const hash of HASHES) {
        const msg = Buffer.from(`low-s ${alg} ${hash}`);
        let rs = signRs(key, hash, msg);
        while (split(rs, size).s > n / 2n) rs = signRs(key, hash, msg);
        const digest = createHash(hash).update(msg).digest();
        const out = formatEcdsaSignature(alg, rs, digest, key.spki);
        expect(out.signature).toBe(rs.toString('hex'));
        const der = Buffer.from(out.der, 'hex');
        expect(verify(hash, msg, { key: key.publicKey, dsaEncoding: 'der' }, der)).toBe(true);
      }
    });

    it(`${alg}: refuses r‖s of the wrong length or out of range`, () => {
      const digest = Buffer.alloc(size, 1);
      const rs = signRs(key, 'sha256', Buffer.from('x'));
      expect(() => formatEcdsaSignature(alg, rs.subarray(1), digest, key.spki)).toThrow(/must be/);
      expect(() => formatEcdsaSignature(alg, Buffer.concat([rs, Buffer.of(0)]), digest, key.spki)).toThrow(/must be/);
      expect(() => formatEcdsaSignature(alg, Buffer.alloc(2 * size), digest, key.spki)).toThrow(/out of range/);
      const rIsN = Buffer.from(toFixedHex(n, size) + rs.subarray(size).toString('hex'), 'hex');
      expect(() => formatEcdsaSignature(alg, rIsN, digest, key.spki)).toThrow(/out of range/);
      expect(() => formatEcdsaSignature(alg, rs, Buffer.alloc(0), key.spki)).toThrow(/empty/);
    });
  }

  it('refuses a non-ECDSA algorithm', () => {
    expect(() => formatEcdsaSignature('eddsa-ed25519', Buffer.alloc(64), Buffer.alloc(32), Buffer.alloc(0))).toThrow(
      /not an ECDSA/,
    );
  });
});

describe('recoveryId', () => {
  const cases = [
    { alg: 'ecdsa-secp256k1', curve: secp256k1 },
    { alg: 'ecdsa-p256', curve: p256 },
  ] as const;

  for (const { alg, curve } of cases) {
    it(`${alg}: equals the id noble's signer derives from R, for high and low s`, () => {
      const key = ecKey(alg);
      const n = ORDER[alg];
      // 32-byte digests (sha256, keccak256) and a 64-byte one, truncated by both sides.
      const digests = [
        ...Array.from({ length: 12 }, (_, i) => createHash('sha256').update(`m${i}`).digest()),
        Buffer.from(keccak_256(Buffer.from('keccak'))),
        createHash('sha512').update('long digest').digest(),
      ];
      const seen = new Set<number>();
      for (const digest of digests) {
        // noble computes the id from R = kG while signing; our code finds it by recovery.
        const sig = curve.sign(digest, key.d, { prehash: false, format: 'recovered' });
        const id = sig[0];
        const { r, s } = split(Buffer.from(sig.subarray(1)), 32);
        const low = Buffer.from(sig.subarray(1));
        const high = Buffer.from(toFixedHex(r, 32) + toFixedHex(n - s, 32), 'hex');
        expect(formatEcdsaSignature(alg, low, digest, key.spki).recoveryId).toBe(id);
        expect(formatEcdsaSignature(alg, high, digest, key.spki).recoveryId).toBe(id);
        seen.add(id ?? -1);
      }
      expect([...seen].sort()).toEqual([0, 1]); // both ids were exercised
    });

    it(`${alg}: an OpenSSL sha512 signature recovers to the key from the full 64-byte hash`, () => {
      const key = ecKey(alg);
      const msg = Buffer.from('sha512 on a 256-bit curve');
      const digest = createHash('sha512').update(msg).digest();
      const out = formatEcdsaSignature(alg, signRs(key, 'sha512', msg), digest, key.spki);
      const recovered = curve.Signature.fromHex(out.signature)
        .addRecoveryBit(out.recoveryId ?? -1)
        .recoverPublicKey(digest)
        .toBytes(false);
      expect(Buffer.from(recovered).equals(key.point)).toBe(true);
    });

    it(`${alg}: another key or another digest is an EcdsaRecoveryError`, () => {
      const key = ecKey(alg);
      const digest = createHash('sha256').update('a').digest();
      const rs = signRs(key, 'sha256', Buffer.from('a'));
      expect(() => formatEcdsaSignature(alg, rs, digest, ecKey(alg).spki)).toThrow(EcdsaRecoveryError);
      const other = createHash('sha256').update('b').digest();
      expect(() => formatEcdsaSignature(alg, rs, other, key.spki)).toThrow(EcdsaRecoveryError);
    });
  }

  it('matches the EIP-155 example transaction (v = 37 on chain 1, so id 0)', () => {
    // https://eips.ethereum.org/EIPS/eip-155: key 0x46…46, address 0x9d8a…5a4f.
    const priv = Buffer.alloc(32, 0x46);
    const point = Buffer.from(secp256k1.getPublicKey(priv, false));
    expect(Buffer.from(keccak_256(point.subarray(1))).subarray(12).toString('hex')).toBe(
      '9d8a62f656a8d1615c1294fd71e9cfb3e4855a4f',
    );
    const spki = spkiFromEcPoint('ecdsa-secp256k1', point);
    const digest = Buffer.from('daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53', 'hex');
    const r = '28ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276';
    const s = '67cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83';
    const out = formatEcdsaSignature('ecdsa-secp256k1', Buffer.from(r + s, 'hex'), digest, spki);
    expect(out).toMatchObject({ r, s, signature: r + s, recoveryId: 0 });
  });
});
