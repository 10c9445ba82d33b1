// sign through the real handler, SoftHSM2 and a real SQLite file: every algorithm verifies with
// node's OpenSSL (not our code path), and a tampered or swapped row never yields a signature.
import { createHash, createPublicKey, verify, constants } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keygen } from '../../handlers/keygen.js';
import { sign } from '../../handlers/sign.js';
import type { JobContext } from '../../runtime/context.js';
import type { Hsm } from '../../runtime/hsm/hsm.js';
import { openSqliteStore } from '../../runtime/store/sqlite.js';
import type { WrappedKeyStore } from '../../runtime/store/store.js';
import { contextFor, openTestHsm } from '../support/hsm.js';
import { opensslVerifyRaw, opensslVerifyRsa } from '../support/openssl.js';

let hsm: Hsm;
let store: WrappedKeyStore;
let ctx: JobContext;
const file = join(mkdtempSync(join(tmpdir(), 'sign-')), 'keys.db');
const message = Buffer.from('transfer 100 to alice');

beforeAll(async () => {
  hsm = await openTestHsm({ 'resident-algorithms': 'eddsa-ed25519' });
  store = await openSqliteStore(file);
  ctx = contextFor(hsm, store);
  for (const algorithm of ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519', 'rsa-2048', 'rsa-3072'] as const) {
    await keygen({ keyId: algorithm, algorithm }, ctx);
  }
  await keygen({ keyId: 'p256-other', algorithm: 'ecdsa-p256' }, ctx);
});
afterAll(async () => {
  await store?.close();
  await hsm?.close();
});

async function publicKeyOf(keyId: string) {
  const row = await store.get(keyId);
  return createPublicKey({ key: row!.publicKeyDer, format: 'der', type: 'spki' });
}

/** Runs a statement on the SQLite file behind the store, as an attacker with database access would. */
function tamper(sql: string, ...params: Array<string | Uint8Array>): void {
  const db = new DatabaseSync(file);
  try {
    db.prepare(sql).run(...params);
  } finally {
    db.close();
  }
}

describe('every algorithm signs and verifies with OpenSSL', () => {
  const ecdsaCases = [
    ['ecdsa-secp256k1', 'keccak256', (m: Buffer) => Buffer.from(keccak_256(m))],
    ['ecdsa-secp256k1', 'sha256', (m: Buffer) => createHash('sha256').update(m).digest()],
    ['ecdsa-p256', 'sha512', (m: Buffer) => createHash('sha512').update(m).digest().subarray(0, 32)],
    ['ecdsa-p384', 'sha384', (m: Buffer) => createHash('sha384').update(m).digest()],
  ] as const;
  test.each(ecdsaCases)('%s with %s', async (keyId, hash, digestOf) => {
    const out = (await sign({ keyId, data: message.toString('hex'), encoding: 'message', hash }, ctx)) as Record<string, string>;
    const spki = (await store.get(keyId))!.publicKeyDer;
    expect(opensslVerifyRaw(spki, digestOf(message), Buffer.from(out.der!, 'hex'))).toBe(true);
    expect(opensslVerifyRaw(spki, digestOf(Buffer.from('other')), Buffer.from(out.der!, 'hex'))).toBe(false);
    expect(out.signature).toBe(out.r! + out.s!);
    expect('recoveryId' in out).toBe(keyId !== 'ecdsa-p384');
  });

  test('ECDSA with encoding digest signs the 32 bytes as given', async () => {
    const digest = createHash('sha256').update(message).digest();
    const out = (await sign({ keyId: 'ecdsa-p256', data: digest.toString('hex'), encoding: 'digest' }, ctx)) as Record<string, string>;
    expect(opensslVerifyRaw((await store.get('ecdsa-p256'))!.publicKeyDer, digest, Buffer.from(out.der!, 'hex'))).toBe(true);
  });

  test('Ed25519 (resident on SoftHSM) signs the message itself', async () => {
    const out = await sign({ keyId: 'eddsa-ed25519', data: message.toString('hex'), encoding: 'message' }, ctx);
    const spki = (await store.get('eddsa-ed25519'))!.publicKeyDer;
    expect(opensslVerifyRaw(spki, message, Buffer.from(out.signature, 'hex'), true)).toBe(true);
    expect(verify(null, message, await publicKeyOf('eddsa-ed25519'), Buffer.from(out.signature, 'hex'))).toBe(true);
  });

  test.each([
    ['rsa-2048', 'sha256', undefined],
    ['rsa-2048', 'sha512', 'pkcs1'],
    ['rsa-3072', 'sha384', 'pss'],
  ] as const)('%s %s %s', async (keyId, hash, padding) => {
    const out = await sign({ keyId, data: message.toString('hex'), encoding: 'message', hash, ...(padding ? { padding } : {}) }, ctx);
    const key = await publicKeyOf(keyId);
    const options =
      padding === 'pkcs1'
        ? { key, padding: constants.RSA_PKCS1_PADDING }
        : { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: hash === 'sha256' ? 32 : hash === 'sha384' ? 48 : 64 };
    expect(verify(hash, message, options, Buffer.from(out.signature, 'hex'))).toBe(true);
    expect(opensslVerifyRsa((await store.get(keyId))!.publicKeyDer, message, Buffer.from(out.signature, 'hex'), hash, padding ?? 'pss')).toBe(true);
  });
});

describe('integrity', () => {
  const digestHex = createHash('sha256').update(message).digest('hex');
  const signP256 = () => sign({ keyId: 'ecdsa-p256', data: digestHex, encoding: 'digest' }, ctx);

  test('a tampered blob is KEY_INTEGRITY', async () => {
    const original = (await store.get('ecdsa-p256'))!.wrappedKey!;
    const bad = Buffer.from(original);
    bad[bad.length - 3]! ^= 0x01;
    tamper('UPDATE keys SET wrapped_key = ? WHERE key_id = ?', bad, 'ecdsa-p256');
    try {
      await expect(signP256()).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
      tamper('UPDATE keys SET wrapped_key = ? WHERE key_id = ?', original.subarray(0, 40), 'ecdsa-p256');
      await expect(signP256()).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    } finally {
      tamper('UPDATE keys SET wrapped_key = ? WHERE key_id = ?', original, 'ecdsa-p256');
    }
    expect(await signP256()).toHaveProperty('der');
  });

  test('another key’s blob in a row (swapped rows) is KEY_INTEGRITY, never a wrong signature', async () => {
    const original = (await store.get('ecdsa-p256'))!.wrappedKey!;
    const other = (await store.get('p256-other'))!.wrappedKey!;
    tamper('UPDATE keys SET wrapped_key = ? WHERE key_id = ?', other, 'ecdsa-p256');
    try {
      await expect(signP256()).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    } finally {
      tamper('UPDATE keys SET wrapped_key = ? WHERE key_id = ?', original, 'ecdsa-p256');
    }
  });

  test('an RSA blob in an EC row is KEY_INTEGRITY', async () => {
    const original = (await store.get('ecdsa-p256'))!.wrappedKey!;
    tamper('UPDATE keys SET wrapped_key = (SELECT wrapped_key FROM keys WHERE key_id = ?) WHERE key_id = ?', 'rsa-2048', 'ecdsa-p256');
    try {
      await expect(signP256()).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    } finally {
      tamper('UPDATE keys SET wrapped_key = ? WHERE key_id = ?', original, 'ecdsa-p256');
    }
  });

  test('a swapped public key is KEY_INTEGRITY', async () => {
    const original = (await store.get('ecdsa-p256'))!.publicKeyDer;
    tamper('UPDATE keys SET public_key_der = (SELECT public_key_der FROM keys WHERE key_id = ?) WHERE key_id = ?', 'p256-other', 'ecdsa-p256');
    try {
      await expect(signP256()).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    } finally {
      tamper('UPDATE keys SET public_key_der = ? WHERE key_id = ?', original, 'ecdsa-p256');
    }
  });
});

describe('sign input', () => {
  const hex = (n: number) => '11'.repeat(n);
  test.each([
    ['digest too short', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: hex(31), encoding: 'digest' }],
    ['P-384 digest of 32 bytes', 'INVALID_INPUT', { keyId: 'ecdsa-p384', data: hex(32), encoding: 'digest' }],
    ['hash with encoding digest', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: hex(32), encoding: 'digest', hash: 'sha256' }],
    ['ECDSA message without hash', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: hex(4), encoding: 'message' }],
    ['unknown hash', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: hex(4), encoding: 'message', hash: 'md5' }],
    ['padding on an EC key', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: hex(4), encoding: 'message', hash: 'sha256', padding: 'pss' }],
    ['keccak256 on RSA', 'INVALID_INPUT', { keyId: 'rsa-2048', data: hex(4), encoding: 'message', hash: 'keccak256' }],
    ['unknown padding', 'INVALID_INPUT', { keyId: 'rsa-2048', data: hex(4), encoding: 'message', hash: 'sha256', padding: 'oaep' }],
    ['encoding digest on RSA', 'INVALID_INPUT', { keyId: 'rsa-2048', data: hex(32), encoding: 'digest', hash: 'sha256' }],
    ['encoding digest on Ed25519', 'INVALID_INPUT', { keyId: 'eddsa-ed25519', data: hex(32), encoding: 'digest' }],
    ['hash on Ed25519', 'INVALID_INPUT', { keyId: 'eddsa-ed25519', data: hex(4), encoding: 'message', hash: 'sha256' }],
    ['0x prefix', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: '0x' + hex(32), encoding: 'digest' }],
    ['odd hex', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: 'abc', encoding: 'digest' }],
    ['65,537 bytes', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: hex(65537), encoding: 'message', hash: 'sha256' }],
    ['unknown encoding', 'INVALID_INPUT', { keyId: 'ecdsa-p256', data: hex(4), encoding: 'raw' }],
    ['no data', 'INVALID_INPUT', { keyId: 'ecdsa-p256', encoding: 'digest' }],
    ['unknown keyId', 'KEY_NOT_FOUND', { keyId: 'missing', data: hex(32), encoding: 'digest' }],
  ] as const)('%s → %s', async (_label, code, input) => {
    await expect(sign(input, ctx)).rejects.toMatchObject({ code });
  });

  test('65,536 bytes is the largest message accepted', async () => {
    const out = await sign({ keyId: 'ecdsa-p256', data: hex(65536), encoding: 'message', hash: 'sha256' }, ctx);
    expect(out.signature).toHaveLength(128);
  });
});
