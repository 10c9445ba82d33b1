// Software verification of token signatures: good ones pass, and any change of data, key,
// padding or salt length fails.

import { constants, createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { formatEcdsaSignature } from '../../../runtime/crypto/ecdsa.js';
import { verifySignature } from '../../../runtime/crypto/verify.js';
import { EC_ALGS, ecKey, signRs, SIZE } from './keys.js';

describe('verifySignature: ECDSA over a digest', () => {
  for (const alg of EC_ALGS) {
    it(`${alg}: token r‖s and our low-s form verify; other data, keys and lengths do not`, () => {
      const key = ecKey(alg);
      for (const hash of ['sha256', 'sha384', 'sha512'] as const) {
        const msg = Buffer.from(`verify ${alg} ${hash}`);
        const digest = createHash(hash).update(msg).digest();
        const raw = signRs(key, hash, msg);
        const low = Buffer.from(formatEcdsaSignature(alg, raw, digest, key.spki).signature, 'hex');
        const req = { family: 'ecdsa', spki: key.spki, digest, signature: low } as const;
        expect(verifySignature(req)).toBe(true);
        expect(verifySignature({ ...req, signature: raw })).toBe(true);
        const other = createHash(hash).update('other data').digest();
        expect(verifySignature({ ...req, digest: other })).toBe(false);
        expect(verifySignature({ ...req, spki: ecKey(alg).spki })).toBe(false);
        expect(verifySignature({ ...req, signature: low.subarray(1) })).toBe(false);
        expect(verifySignature({ ...req, signature: Buffer.alloc(2 * SIZE[alg]) })).toBe(false);
      }
    });
  }

  it('a digest must not be hashed again (node would, with algorithm null)', () => {
    const key = ecKey('ecdsa-p256');
    const msg = Buffer.from('digest, not message');
    const raw = signRs(key, 'sha256', msg);
    expect(verifySignature({ family: 'ecdsa', spki: key.spki, digest: msg, signature: raw })).toBe(false);
  });

  it('throws when the stored key is not EC', () => {
    const spki = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
    const req = { family: 'ecdsa', spki, digest: Buffer.alloc(32), signature: Buffer.alloc(64) } as const;
    expect(() => verifySignature(req)).toThrow(/not an EC key/);
  });
});

describe('verifySignature: Ed25519', () => {
  it('verifies pure Ed25519 over the message', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const message = Buffer.from('ed25519 message');
    const signature = sign(null, message, privateKey);
    expect(verifySignature({ family: 'eddsa', spki, message, signature })).toBe(true);
    expect(verifySignature({ family: 'eddsa', spki, message: Buffer.from('other'), signature })).toBe(false);
    expect(verifySignature({ family: 'eddsa', spki, message, signature: signature.subarray(1) })).toBe(false);
    expect(() => verifySignature({ family: 'eddsa', spki: ecKey('ecdsa-p256').spki, message, signature })).toThrow(
      /Ed25519/,
    );
  });
});

describe('verifySignature: RSA', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const message = Buffer.from('rsa message');
  const pss = (hash: string, saltLength: number) =>
    sign(hash, message, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
  const pkcs1 = (hash: string) => sign(hash, message, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
  const LEN = { sha256: 32, sha384: 48, sha512: 64 } as const;

  for (const hash of ['sha256', 'sha384', 'sha512'] as const) {
    it(`${hash}: PSS with salt = hash length and PKCS#1 v1.5 verify; mix-ups do not`, () => {
      const base = { family: 'rsa', spki, message, hash } as const;
      const sigPss = pss(hash, LEN[hash]);
      const sigV15 = pkcs1(hash);
      expect(verifySignature({ ...base, padding: 'pss', signature: sigPss })).toBe(true);
      expect(verifySignature({ ...base, padding: 'pkcs1', signature: sigV15 })).toBe(true);
      expect(verifySignature({ ...base, padding: 'pkcs1', signature: sigPss })).toBe(false);
      expect(verifySignature({ ...base, padding: 'pss', signature: sigV15 })).toBe(false);
      // The protocol fixes the salt: another length is not the protocol's PSS.
      expect(verifySignature({ ...base, padding: 'pss', signature: pss(hash, 0) })).toBe(false);
      const other = hash === 'sha256' ? 'sha512' : 'sha256';
      expect(verifySignature({ ...base, hash: other, padding: 'pss', signature: sigPss })).toBe(false);
      expect(verifySignature({ ...base, padding: 'pss', message: Buffer.from('x'), signature: sigPss })).toBe(false);
      expect(verifySignature({ ...base, padding: 'pkcs1', signature: sigV15.subarray(1) })).toBe(false);
    });
  }

  it('throws when the stored key is not RSA', () => {
    const req = { family: 'rsa', spki: ecKey('ecdsa-p256').spki, message, hash: 'sha256', padding: 'pss' } as const;
    expect(() => verifySignature({ ...req, signature: Buffer.alloc(256) })).toThrow(/RSA/);
  });
});
