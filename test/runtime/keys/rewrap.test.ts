// keys rewrap against a token of this file's own, on both real stores: a dry run changes
// nothing; a rotation moves every wrapped row to the new master key (each row signs, its seal
// verifies, its audit record is there once), leaves resident keys alone, is a no-op when run
// again, and after it the old master key can be deleted from the token and every key signs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keygen } from '../../../handlers/keygen.js';
import { verifyAudit } from '../../../runtime/audit/verify.js';
import { resolveHsmConfig, settingsFrom } from '../../../runtime/config.js';
import { Hsm } from '../../../runtime/hsm/hsm.js';
import { rowSealInput } from '../../../runtime/hsm/row-seal.js';
import { rewrapRows } from '../../../runtime/keys/rewrap.js';
import { signAndVerify } from '../../../runtime/keys/test-sign.js';
import { openPostgresStore } from '../../../runtime/store/postgres.js';
import { openSqliteStore } from '../../../runtime/store/sqlite.js';
import type { KeyRecord, WrappedKeyStore } from '../../../runtime/store/store.js';
import { contextFor, silentLog } from '../../support/hsm.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { ownToken, pkcs11Tool } from '../../support/token.js';

const dir = mkdtempSync(join(tmpdir(), 'rewrap-'));
const pgUrl = usePostgresDatabase();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let token: Record<string, string>;
const openHsm = (masterKeyLabel: string) => {
  const env = { ...process.env, ...token };
  return Hsm.open(resolveHsmConfig({ ...settingsFrom({}, env), 'master-key-label': masterKeyLabel, 'resident-algorithms': 'eddsa-ed25519' }, env), silentLog);
};

beforeAll(() => {
  token = ownToken(join(dir, 'token'), 'hsm-driver-rewrap');
  // SoftHSM reads its configuration from this process's environment when the library starts.
  process.env.SOFTHSM2_CONF = token.SOFTHSM2_CONF;
});

async function allRows(store: WrappedKeyStore): Promise<KeyRecord[]> {
  const rows: KeyRecord[] = [];
  for (let page = await store.listKeys('', 1000); page.length > 0; page = await store.listKeys(page.at(-1)!.keyId, 1000)) rows.push(...page);
  return rows;
}

describe.sequential.each(['sqlite', 'postgres'] as const)('keys rewrap on %s', (kind) => {
  let store: WrappedKeyStore;
  let hsm: Hsm;
  const next = `${kind}-2027`;
  beforeAll(async () => {
    store = kind === 'sqlite' ? await openSqliteStore(join(dir, 'keys.db')) : await openPostgresStore(pgUrl(), { poolSize: 2 });
    // Keys under the current master key, then the ceremony adds the next one beside it.
    hsm = await openHsm('master');
    const ctx = contextFor(hsm, store);
    for (const algorithm of ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'eddsa-ed25519']) {
      for (let j = 0; j < 4; j++) await keygen({ keyId: `${kind}.${algorithm}.${j}`, algorithm }, ctx);
    }
    ownToken(join(dir, 'token'), 'hsm-driver-rewrap', { MASTER_KEY_LABEL: next });
  });
  afterAll(async () => {
    await hsm?.close();
    await store?.close();
  });

  it('a dry run reports the moves and changes nothing', async () => {
    const before = await allRows(store);
    const report = await rewrapRows(hsm, store, silentLog, { toMasterKey: next, dryRun: true });
    expect(report).toMatchObject({ rewrapped: 0, resident: 4, failed: [], moves: { [`master/aes-key-wrap-pad → ${next}/aes-key-wrap-pad`]: 16 } });
    expect(await allRows(store)).toEqual(before);
  });

  it('moves every wrapped row to the new master key: sealed, signing, audited once; resident keys untouched', async () => {
    const before = await allRows(store);
    const report = await rewrapRows(hsm, store, silentLog, { toMasterKey: next });
    expect(report).toMatchObject({ rewrapped: 16, alreadyDone: 0, resident: 4, changed: 0, failed: [] });
    const after = await allRows(store);
    for (const row of after) {
      const old = before.find((r) => r.keyId === row.keyId)!;
      expect(row.publicKeyDer).toEqual(old.publicKeyDer);
      expect(row.createdAt).toEqual(old.createdAt);
      if (row.residentId) {
        expect(row).toEqual(old);
        continue;
      }
      expect(row.masterKeyLabel).toBe(next);
      expect(row.wrappedKey).not.toEqual(old.wrappedKey);
      expect(await hsm.verifySeal(rowSealInput(row), row.seal!)).toBe(true);
      await signAndVerify(hsm, row);
    }
    const chains = await verifyAudit(store.audit, hsm);
    expect(chains.every((c) => !c.firstBad)).toBe(true);
    const records = [];
    for (const c of chains) records.push(...(await store.audit.read({ chain: c.chain, afterSeq: 0, limit: 10_000 })));
    const rewraps = records.filter((r) => r.kind === 'keys-rewrap').map((r) => r.keyId);
    expect(rewraps.sort()).toEqual(after.filter((r) => r.wrappedKey).map((r) => r.keyId).sort());
  });

  it('a second run finds nothing to do', async () => {
    expect(await rewrapRows(hsm, store, silentLog, { toMasterKey: next })).toMatchObject({ rewrapped: 0, alreadyDone: 16, resident: 4, changed: 0 });
  });

  it('refuses a target master key the token does not hold, before touching anything', async () => {
    await expect(rewrapRows(hsm, store, silentLog, { toMasterKey: 'no-such-master' })).rejects.toThrow(/master key "no-such-master" not found/);
  });

  it('after the old master key is deleted from the token, every key still signs', async () => {
    pkcs11Tool(token, ['--delete-object', '--type', 'secrkey', '--label', 'master']);
    const fresh = await openHsm(next);
    try {
      for (const row of await allRows(store)) await signAndVerify(fresh, row);
    } finally {
      await fresh.close();
    }
    // The next store's keys are made under a master key labelled "master" again.
    ownToken(join(dir, 'token'), 'hsm-driver-rewrap', { MASTER_KEY_LABEL: 'master' });
  });
});
