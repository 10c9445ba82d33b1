// Checks our DER signatures and SPKIs with the openssl command-line tool, so code other than
// our own path (and other than node's bindings) accepts what we return.

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { afterAll, describe, expect, it } from 'vitest';
import { formatEcdsaSignature } from '../../../runtime/crypto/ecdsa.js';
import { spkiFromEcPoint, spkiFromEd25519, spkiFromRsa } from '../../../runtime/crypto/public-key.js';
import { ecKey, ORDER, signRs, split, type EcAlg } from './keys.js';

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const dir = mkdtempSync(join(tmpdir(), 'hsm-crypto-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `openssl pkeyutl -verify` on a raw digest: true iff it exits 0 and says so. */
function opensslVerify(spki: Buffer, digest: Buffer, derHex: string): boolean {
  writeFileSync(join(dir, 'pub.der'), spki);
  writeFileSync(join(dir, 'digest.bin'), digest);
  writeFileSync(join(dir, 'sig.der'), Buffer.from(derHex, 'hex'));
  const args = ['pkeyutl', '-verify', '-pubin', '-keyform', 'DER', '-inkey', join(dir, 'pub.der')];
  const res = spawnSync('openssl', [...args, '-in', join(dir, 'digest.bin'), '-sigfile', join(dir, 'sig.der')]);
  return res.status === 0 && res.stdout.toString().includes('Signature Verified Successfully');
}

/** SPKI → openssl's parse → SPKI again; equal bytes mean it read every field as we meant. */
function opensslRoundTrip(spki: Buffer): Buffer {
  writeFileSync(join(dir, 'rt.der'), spki);
  return execFileSync('openssl', ['pkey', '-pubin', '-inform', 'DER', '-in', join(dir, 'rt.der'), '-outform', 'DER']);
}

describe.skipIf(!hasOpenssl)('openssl CLI', () => {
  const cases: { alg: EcAlg; hash: 'sha256' | 'sha384' | 'sha512' }[] = [
    { alg: 'ecdsa-secp256k1', hash: 'sha256' },
    { alg: 'ecdsa-p256', hash: 'sha512' }, // a 64-byte digest, truncated by openssl as by a token
    { alg: 'ecdsa-p384', hash: 'sha384' },
  ];
  for (const { alg, hash } of cases) {
    it(`${alg} ${hash}: accepts our DER of a high-s token signature, refuses other data`, () => {
      const key = ecKey(alg);
      const msg = Buffer.from(`openssl ${alg}`);
      let rs = signRs(key, hash, msg);
      while (split(rs, rs.length / 2).s <= ORDER[alg] / 2n) rs = signRs(key, hash, msg);
      const digest = createHash(hash).update(msg).digest();
      const out = formatEcdsaSignature(alg, rs, digest, key.spki);
      const spki = spkiFromEcPoint(alg, key.ecPoint);
      expect(opensslVerify(spki, digest, out.der)).toBe(true);
      expect(opensslVerify(spki, createHash(hash).update('other').digest(), out.der)).toBe(false);
    });
  }

  it('secp256k1 keccak256: accepts our DER', () => {
    const key = ecKey('ecdsa-secp256k1');
    const digest = Buffer.from(keccak_256(Buffer.from('ethereum-style message')));
    const sig = secp256k1.sign(digest, key.d, { prehash: false, lowS: false });
    const out = formatEcdsaSignature('ecdsa-secp256k1', Buffer.from(sig), digest, key.spki);
    expect(opensslVerify(key.spki, digest, out.der)).toBe(true);
  });

  it('reads our SPKIs for EC, Ed25519 and RSA exactly as written', () => {
    for (const alg of ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384'] as const) {
      const spki = spkiFromEcPoint(alg, ecKey(alg).point);
      expect(opensslRoundTrip(spki).equals(spki)).toBe(true);
    }
    const ed = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
    const edSpki = spkiFromEd25519(Buffer.from(ed.x ?? '', 'base64url'));
    expect(opensslRoundTrip(edSpki).equals(edSpki)).toBe(true);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    const rsaSpki = spkiFromRsa(Buffer.from(rsa.n ?? '', 'base64url'), Buffer.from(rsa.e ?? '', 'base64url'));
    expect(opensslRoundTrip(rsaSpki).equals(rsaSpki)).toBe(true);
  });
});
