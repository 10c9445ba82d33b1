// The behaviour every key store must share, run by sqlite.test.ts and postgres.test.ts alike.
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, DatabaseError } from '../../../runtime/errors.js';
import { LATEST_VERSION } from '../../../runtime/store/migrations.js';
import type { AuditRecord } from '../../../runtime/audit/record.js';
import type { KeyRecord, WrappedKeyStore } from '../../../runtime/store/store.js';

/** How a test file reaches its database: opens stores on it and edits it behind their backs. */
export interface StoreHarness {
  /** A new store instance on the same database each call. */
  open(): Promise<WrappedKeyStore>;
  appliedVersions(): Promise<number[]>;
  addSchemaVersion(version: number): Promise<void>;
  removeSchemaVersion(version: number): Promise<void>;
}

export function wrappedRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    keyId: randomUUID(),
    algorithm: 'ecdsa-secp256k1',
    publicKeyDer: randomBytes(88),
    wrappedKey: randomBytes(152),
    residentId: null,
    wrapMechanism: 'CKM_AES_KEY_WRAP_KWP',
    masterKeyLabel: 'master-2024',
    createdAt: new Date('2024-05-06T07:08:09.123Z'),
    seal: randomBytes(32),
    ...overrides,
  };
}

/** Opens a store, runs fn, and closes it even when fn throws. */
async function withStore<T>(harness: StoreHarness, fn: (store: WrappedKeyStore) => Promise<T>): Promise<T> {
  const store = await harness.open();
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export function describeStoreContract(kind: 'sqlite' | 'postgres', harness: StoreHarness): void {
  describe(`${kind} store contract`, () => {
    it('stores and reads back a wrapped key and a resident key unchanged', async () => {
      await withStore(harness, async (store) => {
        expect(store.kind).toBe(kind);
        const wrapped = wrappedRecord();
        const resident = wrappedRecord({
          algorithm: 'eddsa-ed25519',
          wrappedKey: null,
          residentId: randomBytes(16),
          wrapMechanism: null,
        });
        for (const record of [wrapped, resident]) {
          expect(await store.insertIfAbsent(record)).toEqual({ stored: record, inserted: true });
          const read = await store.get(record.keyId);
          expect(read).toEqual(record);
          expect(Buffer.isBuffer(read?.publicKeyDer)).toBe(true);
          expect(read?.createdAt).toBeInstanceOf(Date);
          expect(read?.createdAt.getTime()).toBe(record.createdAt.getTime());
        }
      });
    });

    it('returns undefined for a key it does not hold', async () => {
      await withStore(harness, async (store) => {
        expect(await store.get(randomUUID())).toBeUndefined();
      });
    });

    it('keeps the first row when the same keyId is inserted twice', async () => {
      await withStore(harness, async (store) => {
        const first = wrappedRecord();
        const second = wrappedRecord({ keyId: first.keyId, algorithm: 'rsa-2048' });
        expect((await store.insertIfAbsent(first)).inserted).toBe(true);
        expect(await store.insertIfAbsent(second)).toEqual({ stored: first, inserted: false });
        expect(await store.get(first.keyId)).toEqual(first);
      });
    });

    it('lets exactly one of many racing inserts from two stores win', async () => {
      const [a, b] = [await harness.open(), await harness.open()];
      try {
        const keyId = randomUUID();
        const candidates = Array.from({ length: 20 }, () => wrappedRecord({ keyId }));
        const outcomes = await Promise.all(candidates.map((r, i) => (i % 2 === 0 ? a : b).insertIfAbsent(r)));
        const winners = outcomes.filter((o) => o.inserted);
        expect(winners).toHaveLength(1);
        const winner = winners[0]!.stored;
        expect(candidates).toContainEqual(winner);
        for (const outcome of outcomes) expect(outcome.stored).toEqual(winner);
        expect(await a.get(keyId)).toEqual(winner);
        expect(await b.get(keyId)).toEqual(winner);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    it('counts stored keys, not insert attempts', async () => {
      await withStore(harness, async (store) => {
        const before = await store.countKeys();
        const records = [wrappedRecord(), wrappedRecord(), wrappedRecord()];
        for (const record of records) await store.insertIfAbsent(record);
        await store.insertIfAbsent(wrappedRecord({ keyId: records[0]!.keyId }));
        expect(await store.countKeys()).toBe(before + 3);
      });
    });

    it('applies each migration once however often it is reopened', async () => {
      for (let i = 0; i < 3; i += 1) await withStore(harness, (store) => store.ping());
      const expected = Array.from({ length: LATEST_VERSION }, (_, i) => i + 1);
      expect(await harness.appliedVersions()).toEqual(expected);
    });

    it('refuses a database migrated by a newer driver, naming both versions', async () => {
      const newer = LATEST_VERSION + 1;
      await harness.addSchemaVersion(newer);
      try {
        const opening = harness.open();
        await expect(opening).rejects.toBeInstanceOf(ConfigError);
        await expect(opening).rejects.toThrow(
          new RegExp(`schema version ${newer}, newer than version ${LATEST_VERSION}`),
        );
      } finally {
        await harness.removeSchemaVersion(newer);
      }
    });

    it('rejects a row with both or neither of wrapped key and resident id', async () => {
      await withStore(harness, async (store) => {
        const both = wrappedRecord({ residentId: randomBytes(16) });
        const neither = wrappedRecord({ wrappedKey: null });
        for (const record of [both, neither]) {
          const inserting = store.insertIfAbsent(record);
          await expect(inserting).rejects.toBeInstanceOf(DatabaseError);
          await expect(inserting).rejects.toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/check/i) });
          expect(await store.get(record.keyId)).toBeUndefined();
        }
      });
    });

    it('keeps a key across close and reopen, as across a restart', async () => {
      const record = wrappedRecord({ algorithm: 'ecdsa-p384' });
      await withStore(harness, (store) => store.insertIfAbsent(record));
      await withStore(harness, async (store) => {
        expect(await store.get(record.keyId)).toEqual(record);
      });
    });

    it('lists keys in keyId order, a page at a time, from any point', async () => {
      await withStore(harness, async (store) => {
        const prefix = `list-${randomUUID()}-`;
        const ids = ['c', 'a', 'e', 'b', 'd'].map((s) => prefix + s);
        for (const keyId of ids) await store.insertIfAbsent(wrappedRecord({ keyId }));
        const pages: string[][] = [];
        for (let after = prefix; ; ) {
          const page = (await store.listKeys(after, 2)).filter((r) => r.keyId.startsWith(prefix));
          if (page.length === 0) break;
          pages.push(page.map((r) => r.keyId));
          after = page.at(-1)!.keyId;
        }
        expect(pages).toEqual([[prefix + 'a', prefix + 'b'], [prefix + 'c', prefix + 'd'], [prefix + 'e']]);
      });
    });

    it('replaces a row only while it is still the row that was read', async () => {
      await withStore(harness, async (store) => {
        const read = wrappedRecord({ seal: null });
        await store.insertIfAbsent(read);
        const next = { ...read, wrappedKey: randomBytes(152), masterKeyLabel: 'master-2025', seal: randomBytes(32) };
        expect(await store.replaceKey(read, next)).toBe(true);
        expect(await store.get(read.keyId)).toEqual(next);
        // A second writer still holding the old row loses, and changes nothing.
        expect(await store.replaceKey(read, { ...read, seal: randomBytes(32) })).toBe(false);
        expect(await store.get(read.keyId)).toEqual(next);
      });
    });

    it('inserts absent rows with their audit records in one transaction, keeps stored ones, and writes nothing when the records fail', async () => {
      await withStore(harness, async (store) => {
        const stored = wrappedRecord();
        await store.insertIfAbsent(stored);
        const fresh = [wrappedRecord(), wrappedRecord()];
        const chain = randomUUID();
        const recordOf = (r: KeyRecord, seq: number): AuditRecord => ({
          at: new Date(), jobId: 'keys-import', attempt: 1, kind: 'keys-import', keyId: r.keyId, algorithm: r.algorithm, dataSha256: null, outcome: 'ok', code: null,
          driverSubject: 'test', driverFingerprint: '', chain, seq, prevHash: randomBytes(32), hash: randomBytes(32), seal: null,
        });
        const outcomes = await store.insertKeysWithAudit([fresh[0]!, wrappedRecord({ keyId: stored.keyId }), fresh[1]!], async (inserted) => inserted.map((r, i) => recordOf(r, i + 1)));
        expect(outcomes).toEqual([{ stored: fresh[0], inserted: true }, { stored, inserted: false }, { stored: fresh[1], inserted: true }]);
        expect(await store.get(fresh[1]!.keyId)).toEqual(fresh[1]);
        expect((await store.audit.read({ chain, afterSeq: 0, limit: 10 })).map((r) => r.keyId)).toEqual(fresh.map((r) => r.keyId));

        const lost = wrappedRecord();
        await expect(store.insertKeysWithAudit([lost], async () => Promise.reject(new Error('no seal')))).rejects.toThrow();
        expect(await store.get(lost.keyId)).toBeUndefined();
      });
    });

    it('refuses to be used after close', async () => {
      const store = await harness.open();
      await store.close();
      await store.close();
      await expect(store.get(randomUUID())).rejects.toMatchObject({ code: 'INTERNAL' });
    });
  });
}
