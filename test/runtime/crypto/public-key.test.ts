// SPKI and `publicKey` hex built from raw token outputs, checked against node:crypto's own
// export of the same keys.

import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  publicKeyHex,
  spkiFromEcPoint,
  spkiFromEd25519,
  spkiFromRsa,
} from '../../../runtime/crypto/public-key.js';
import { EC_ALGS, ecKey, SIZE } from './keys.js';

describe('spkiFromEcPoint', () => {
  for (const alg of EC_ALGS) {
    it(`${alg}: wrapped and raw CKA_EC_POINT give node's SPKI`, () => {
      const key = ecKey(alg);
      expect(spkiFromEcPoint(alg, key.ecPoint).equals(key.spki)).toBe(true);
      expect(spkiFromEcPoint(alg, key.point).equals(key.spki)).toBe(true);
      const hex = publicKeyHex(alg, key.spki);
      expect(hex).toBe(key.point.toString('hex'));
      expect(hex).toMatch(/^04[0-9a-f]+$/);
      expect(hex?.length).toBe(2 * (1 + 2 * SIZE[alg]));
    });
  }

  it('reports 65 bytes for secp256k1 and P-256 and 97 for P-384', () => {
    expect(publicKeyHex('ecdsa-secp256k1', ecKey('ecdsa-secp256k1').spki)?.length).toBe(130);
    expect(publicKeyHex('ecdsa-p256', ecKey('ecdsa-p256').spki)?.length).toBe(130);
    expect(publicKeyHex('ecdsa-p384', ecKey('ecdsa-p384').spki)?.length).toBe(194);
  });

  it('refuses wrong lengths, compressed and off-curve points, and a non-EC algorithm', () => {
    const key = ecKey('ecdsa-p256');
    expect(() => spkiFromEcPoint('ecdsa-p256', key.point.subarray(1))).toThrow(/65 bytes/);
    expect(() => spkiFromEcPoint('ecdsa-p384', key.ecPoint)).toThrow(/97 bytes/);
    const badHeader = Buffer.from(key.ecPoint);
    badHeader[1] = 0x40;
    expect(() => spkiFromEcPoint('ecdsa-p256', badHeader)).toThrow(/65 bytes/);
    const compressed = Buffer.concat([Buffer.of(0x02), key.point.subarray(1, 33), Buffer.alloc(32)]);
    expect(() => spkiFromEcPoint('ecdsa-p256', compressed)).toThrow(/uncompressed/);
    const offCurve = Buffer.from(key.point);
    offCurve[64] = (offCurve[64] ?? 0) ^ 1;
    expect(() => spkiFromEcPoint('ecdsa-p256', offCurve)).toThrow(/not a point on P-256/);
    // A P-256 point is not (in general) a secp256k1 point.
    expect(() => spkiFromEcPoint('ecdsa-secp256k1', key.point)).toThrow(/secp256k1/);
    expect(() => spkiFromEcPoint('rsa-2048', key.point)).toThrow(/not an ECDSA/);
  });
});

describe('spkiFromEd25519', () => {
  it('raw and wrapped values give node\'s SPKI and a 32-byte publicKey', () => {
    const { publicKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
    expect(raw.length).toBe(32);
    expect(spkiFromEd25519(raw).equals(spki)).toBe(true);
    expect(spkiFromEd25519(Buffer.concat([Buffer.of(0x04, 0x20), raw])).equals(spki)).toBe(true);
    expect(publicKeyHex('eddsa-ed25519', spki)).toBe(raw.toString('hex'));
  });

  it('refuses wrong lengths and bytes that are not a point', () => {
    expect(() => spkiFromEd25519(Buffer.alloc(31))).toThrow(/32 bytes/);
    expect(() => spkiFromEd25519(Buffer.concat([Buffer.of(0x04, 0x21), Buffer.alloc(33)]))).toThrow(/32 bytes/);
    // y = 2^255 − 1 is above the field prime: no encoding of a point.
    expect(() => spkiFromEd25519(Buffer.alloc(32, 0xff))).toThrow(/not a valid curve point/);
  });
});

describe('spkiFromRsa', () => {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 65537 });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const jwk = publicKey.export({ format: 'jwk' });
  const n = Buffer.from(jwk.n ?? '', 'base64url');
  const e = Buffer.from(jwk.e ?? '', 'base64url');

  it("gives node's SPKI, also when the token pads with leading zeros", () => {
    expect(spkiFromRsa(n, e).equals(spki)).toBe(true);
    expect(spkiFromRsa(Buffer.concat([Buffer.of(0), n]), Buffer.of(0, 1, 0, 1)).equals(spki)).toBe(true);
    expect(publicKeyHex('rsa-2048', spki)).toBeUndefined();
  });

  it('refuses empty or even values and a key of another size', () => {
    expect(() => spkiFromRsa(Buffer.alloc(0), e)).toThrow(/modulus/);
    expect(() => spkiFromRsa(Buffer.concat([n.subarray(0, -1), Buffer.of(2)]), e)).toThrow(/modulus/);
    expect(() => spkiFromRsa(n, Buffer.of(0))).toThrow(/exponent/);
    expect(() => publicKeyHex('rsa-3072', spki)).toThrow(/RSA-2048, not rsa-3072/);
  });
});

describe('publicKeyHex', () => {
  it('refuses a key of another algorithm and bytes that are not SPKI', () => {
    const k1 = ecKey('ecdsa-secp256k1');
    expect(() => publicKeyHex('ecdsa-p256', k1.spki)).toThrow(/P-256/);
    expect(() => publicKeyHex('eddsa-ed25519', k1.spki)).toThrow(/Ed25519/);
    expect(() => publicKeyHex('rsa-2048', k1.spki)).toThrow(/RSA/);
    expect(() => publicKeyHex('ecdsa-secp256k1', Buffer.from('3000', 'hex'))).toThrow(/SubjectPublicKeyInfo/);
  });
});
