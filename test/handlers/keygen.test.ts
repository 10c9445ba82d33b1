// keygen through the real handler, SoftHSM2 and both stores: idempotence, KEY_EXISTS, races.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pkcs11 from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { keygen } from '../../handlers/keygen.js';
import type { Hsm } from '../../runtime/hsm/hsm.js';
import { openPostgresStore } from '../../runtime/store/postgres.js';
import { openSqliteStore } from '../../runtime/store/sqlite.js';
import type { WrappedKeyStore } from '../../runtime/store/store.js';
import { contextFor, openTestHsm } from '../support/hsm.js';
import { usePostgresDatabase } from '../support/postgres.js';

let hsm: Hsm;
const pgUrl = usePostgresDatabase();
const sqliteFile = join(mkdtempSync(join(tmpdir(), 'keygen-')), 'keys.db');
beforeAll(async () => {
  hsm = await openTestHsm({ 'resident-algorithms': 'eddsa-ed25519' });
});
afterAll(async () => {
  await hsm?.close();
});

/** Token objects labelled with a keyId: resident keys that exist in the HSM for it. */
function tokenObjectsLabelled(label: string): Promise<number> {
  return hsm.pool.use(async (s) => {
    const lib = hsm.library.lib;
    lib.C_FindObjectsInit(s, [{ type: pkcs11.CKA_TOKEN, value: true }, { type: pkcs11.CKA_LABEL, value: label }]);
    const n = lib.C_FindObjects(s, 100).length;
    lib.C_FindObjectsFinal(s);
    return n;
  });
}

const stores = {
  sqlite: () => openSqliteStore(sqliteFile),
  postgres: () => openPostgresStore(pgUrl()),
};

describe.each(Object.entries(stores))('keygen on %s', (name, open) => {
  let a: WrappedKeyStore;
  let b: WrappedKeyStore;
  beforeAll(async () => {
    [a, b] = [await open(), await open()];
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  test('a repeated keygen returns the stored key and creates nothing', async () => {
    const keyId = `idem.${name}`;
    const first = await keygen({ keyId, algorithm: 'ecdsa-secp256k1' }, contextFor(hsm, a));
    const before = await a.countKeys();
    const again = await keygen({ keyId, algorithm: 'ecdsa-secp256k1' }, contextFor(hsm, b));
    expect(again).toEqual(first);
    expect(await a.countKeys()).toBe(before);
    expect(first.publicKey).toMatch(/^04[0-9a-f]{128}$/);
  });

  test('a keygen for an existing keyId with another algorithm is KEY_EXISTS', async () => {
    const keyId = `exists.${name}`;
    await keygen({ keyId, algorithm: 'ecdsa-p256' }, contextFor(hsm, a));
    await expect(keygen({ keyId, algorithm: 'rsa-2048' }, contextFor(hsm, a))).rejects.toMatchObject({ code: 'KEY_EXISTS' });
  });

  test('drivers racing for one keyId all return the one committed key', async () => {
    const keyId = `race.${name}`;
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => keygen({ keyId, algorithm: 'ecdsa-p256' }, contextFor(hsm, i % 2 ? a : b))),
    );
    expect(new Set(results.map((r) => r.publicKeyDer)).size).toBe(1);
    expect((await a.get(keyId))?.publicKeyDer.toString('base64')).toBe(results[0]!.publicKeyDer);
  });

  test('a race for a resident key leaves exactly one token object: the losers destroy theirs', async () => {
    const keyId = `race.resident.${name}`;
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => keygen({ keyId, algorithm: 'eddsa-ed25519' }, contextFor(hsm, i % 2 ? a : b))),
    );
    expect(new Set(results.map((r) => r.publicKey)).size).toBe(1);
    expect(await tokenObjectsLabelled(keyId)).toBe(1);
    const row = await a.get(keyId);
    expect(row?.residentId).toHaveLength(16);
    expect(row?.wrappedKey).toBeNull();
  });

  test('a key survives reopening the store (a restart)', async () => {
    const keyId = `restart.${name}`;
    const made = await keygen({ keyId, algorithm: 'ecdsa-p384' }, contextFor(hsm, a));
    const reopened = await open();
    try {
      expect(await keygen({ keyId, algorithm: 'ecdsa-p384' }, contextFor(hsm, reopened))).toEqual(made);
    } finally {
      await reopened.close();
    }
  });
});

describe('keygen input', () => {
  test.each([
    [{ keyId: 'ok', algorithm: 'dsa-1024' }, 'UNSUPPORTED_ALGORITHM'],
    [{ keyId: 'ok' }, 'INVALID_INPUT'],
    [{ keyId: 'bad/char', algorithm: 'ecdsa-p256' }, 'INVALID_INPUT'],
    [{ keyId: 'x'.repeat(129), algorithm: 'ecdsa-p256' }, 'INVALID_INPUT'],
    [{ keyId: '', algorithm: 'ecdsa-p256' }, 'INVALID_INPUT'],
    [[], 'INVALID_INPUT'],
    [null, 'INVALID_INPUT'],
  ])('%j → %s', async (input, code) => {
    const store = await openSqliteStore(sqliteFile);
    try {
      await expect(keygen(input, contextFor(hsm, store))).rejects.toMatchObject({ code });
    } finally {
      await store.close();
    }
  });
});
