// Rows bound to their keyId by an HSM seal, attacked on both real stores: a whole row copied
// from one keyId to another (blob, public key, even its seal) is KEY_INTEGRITY before any
// unwrap; a row without a seal is signed with a warning and counted, or refused under
// --require-sealed-rows; the public-key check still stands behind the seal.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keygen } from '../../../handlers/keygen.js';
import { sign } from '../../../handlers/sign.js';
import type { Hsm } from '../../../runtime/hsm/hsm.js';
import { rowSealInput } from '../../../runtime/hsm/row-seal.js';
import { openPostgresStore } from '../../../runtime/store/postgres.js';
import { openSqliteStore } from '../../../runtime/store/sqlite.js';
import type { WrappedKeyStore } from '../../../runtime/store/store.js';
import { contextFor, openTestHsm } from '../../support/hsm.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { postgresTamper, sqliteTamper, type Tamper } from '../../support/tamper.js';

const dir = mkdtempSync(join(tmpdir(), 'row-seal-'));
const pgUrl = usePostgresDatabase();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const stores: Record<'sqlite' | 'postgres', { open: () => Promise<WrappedKeyStore>; tamper: Tamper }> = {
  sqlite: {
    open: () => openSqliteStore(join(dir, 'keys.db')),
    tamper: sqliteTamper(join(dir, 'keys.db')),
  },
  postgres: {
    open: () => openPostgresStore(pgUrl(), { poolSize: 2 }),
    tamper: postgresTamper(pgUrl),
  },
};

let hsm: Hsm;
let strict: Hsm;
beforeAll(async () => {
  hsm = await openTestHsm({ 'resident-algorithms': 'eddsa-ed25519' });
  strict = await openTestHsm({ 'resident-algorithms': 'eddsa-ed25519', 'require-sealed-rows': 'true' });
});
afterAll(async () => {
  await hsm?.close();
  await strict?.close();
});

const digest = { data: '44'.repeat(32), encoding: 'digest' };

for (const kind of ['sqlite', 'postgres'] as const) {
  describe(`row seals on ${kind}`, () => {
    const { open, tamper } = stores[kind];
    let store: WrappedKeyStore;
    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store?.close();
    });
    const ctx = () => contextFor(hsm, store);
    /** Copies every column but key_id and created_at from row `from` into row `to`. */
    const copyRow = async (from: string, to: string) => {
      const src = (await store.get(from))!;
      await tamper('UPDATE keys SET public_key_der = $1, wrapped_key = $2, resident_id = $3, wrap_mechanism = $4, master_key_label = $5, seal = $6 WHERE key_id = $7', [
        src.publicKeyDer, src.wrappedKey, src.residentId, src.wrapMechanism, src.masterKeyLabel, src.seal, to,
      ]);
    };

    it('keygen stores a seal the HSM made over the whole row', async () => {
      await keygen({ keyId: `${kind}.a`, algorithm: 'ecdsa-secp256k1' }, ctx());
      const row = (await store.get(`${kind}.a`))!;
      expect(row.seal).toHaveLength(32);
      expect(await hsm.verifySeal(rowSealInput(row), row.seal!)).toBe(true);
      expect(await hsm.verifySeal(rowSealInput({ ...row, keyId: `${kind}.b` }), row.seal!)).toBe(false);
    });

    it('a whole row copied from B to A (blob, public key and seal) is KEY_INTEGRITY for A; B still signs', async () => {
      for (const id of ['src', 'dst']) await keygen({ keyId: `${kind}.copy.${id}`, algorithm: 'ecdsa-secp256k1' }, ctx());
      await copyRow(`${kind}.copy.src`, `${kind}.copy.dst`);
      await expect(sign({ keyId: `${kind}.copy.dst`, ...digest }, ctx())).rejects.toMatchObject({ code: 'KEY_INTEGRITY', message: expect.stringContaining('does not match its seal') });
      await expect(sign({ keyId: `${kind}.copy.src`, ...digest }, ctx())).resolves.toHaveProperty('signature');
    });

    it('the same for a resident key row', async () => {
      for (const id of ['src', 'dst']) await keygen({ keyId: `${kind}.res.${id}`, algorithm: 'eddsa-ed25519' }, ctx());
      await copyRow(`${kind}.res.src`, `${kind}.res.dst`);
      await expect(sign({ keyId: `${kind}.res.dst`, data: '4444', encoding: 'message' }, ctx())).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    });

    it('an unsealed row signs with a warning and is counted; --require-sealed-rows refuses it', async () => {
      await keygen({ keyId: `${kind}.old`, algorithm: 'ecdsa-p256' }, ctx());
      await tamper('UPDATE keys SET seal = NULL WHERE key_id = $1', [`${kind}.old`]);
      const before = hsm.rowSeals.unsealedAccepted;
      await expect(sign({ keyId: `${kind}.old`, ...digest }, ctx())).resolves.toHaveProperty('signature');
      expect(hsm.rowSeals.unsealedAccepted).toBe(before + 1);
      await expect(sign({ keyId: `${kind}.old`, ...digest }, contextFor(strict, store))).rejects.toMatchObject({ code: 'KEY_INTEGRITY', message: expect.stringContaining('keys seal') });
    });

    it('behind the seal, the public-key check still refuses a copied row whose seal was removed', async () => {
      for (const id of ['src', 'dst']) await keygen({ keyId: `${kind}.nos.${id}`, algorithm: 'ecdsa-secp256k1' }, ctx());
      const dst = (await store.get(`${kind}.nos.dst`))!;
      const src = (await store.get(`${kind}.nos.src`))!;
      // Only the blob moves, seal removed: the signature by src's key fails against dst's public key.
      await tamper('UPDATE keys SET wrapped_key = $1, seal = NULL WHERE key_id = $2', [src.wrappedKey, dst.keyId]);
      await expect(sign({ keyId: dst.keyId, ...digest }, ctx())).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    });

    it('with the key cache on, a row changed after its key was cached is still refused', async () => {
      const cached = await openTestHsm({ 'key-cache-size': '8', sessions: '1' });
      try {
        const c = contextFor(cached, store);
        for (const id of ['src', 'dst']) await keygen({ keyId: `${kind}.cache.${id}`, algorithm: 'ecdsa-secp256k1' }, c);
        await sign({ keyId: `${kind}.cache.dst`, ...digest }, c);
        await sign({ keyId: `${kind}.cache.src`, ...digest }, c);
        await copyRow(`${kind}.cache.src`, `${kind}.cache.dst`);
        await expect(sign({ keyId: `${kind}.cache.dst`, ...digest }, c)).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
      } finally {
        await cached.close();
      }
    });
  });
}
