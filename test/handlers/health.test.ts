// health and the kind table: every part reported with its latency; a part that is down makes
// ok false without failing the job; unknown kinds are UNSUPPORTED_KIND.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { health } from '../../handlers/health.js';
import { handlerFor } from '../../handlers/index.js';
import { keygen } from '../../handlers/keygen.js';
import type { Hsm } from '../../runtime/hsm/hsm.js';
import { IntegrityKey } from '../../runtime/hsm/integrity-key.js';
import { UnavailableHsm } from '../../runtime/hsm/unavailable.js';
import { openSqliteStore } from '../../runtime/store/sqlite.js';
import { openPostgresStore } from '../../runtime/store/postgres.js';
import { UnavailableStore } from '../../runtime/store/unavailable.js';
import type { WrappedKeyStore } from '../../runtime/store/store.js';
import { HsmError } from '../../runtime/errors.js';
import { contextFor, openTestHsm } from '../support/hsm.js';

let hsm: Hsm;
let store: WrappedKeyStore;
beforeAll(async () => {
  hsm = await openTestHsm({ 'resident-algorithms': 'eddsa-ed25519' });
  store = await openSqliteStore(join(mkdtempSync(join(tmpdir(), 'health-')), 'keys.db'));
});
afterAll(async () => {
  await store?.close();
  await hsm?.close();
});

test('all parts up: ok, token identity, modes per algorithm and the key count', async () => {
  await keygen({ keyId: 'h1', algorithm: 'ecdsa-p256' }, contextFor(hsm, store));
  const out = await health({}, contextFor(hsm, store));
  expect(out.ok).toBe(true);
  expect(out.hsm).toMatchObject({ ok: true, tokenLabel: 'hsm-driver-test', library: expect.stringMatching(/SoftHSM/) });
  expect(out.hsm.tokenSerial).toMatch(/^[0-9a-f]{16}$/);
  expect(out.hsm.algorithms).toMatchObject({ 'ecdsa-p256': 'wrapped', 'eddsa-ed25519': 'resident' });
  expect(out.masterKey).toEqual({ ok: true, label: 'master' });
  expect(out.integrityKey).toEqual({ ok: true, label: 'integrity' });
  expect(out.database).toMatchObject({ ok: true, kind: 'sqlite', keys: 1 });
  expect(out.database.latencyMs).toBeGreaterThanOrEqual(0);
});

test('a token without the integrity key is reported, with the ceremony command, and does not fail the check', async () => {
  // The same Hsm, asked about a label the token does not hold (a second Hsm would C_Finalize this one's library).
  const port = Object.create(hsm, { integrityKey: { value: { label: 'no-such-key' } }, checkIntegrityKey: { value: () => hsm.pool.use(async (s) => void new IntegrityKey(hsm.pool, 'no-such-key').find(s)) } });
  const out = await health({}, contextFor(port, store));
  expect(out.ok).toBe(true);
  expect(out.integrityKey).toMatchObject({ ok: false, label: 'no-such-key', error: expect.stringMatching(/not found; make it at the key ceremony: pkcs11-tool .*--label no-such-key/) });
});

test('a database that is down is reported, and the job still answers', async () => {
  const err = await openPostgresStore('postgres://postgres@127.0.0.1:1/none').catch((e: unknown) => e);
  const out = await health({}, contextFor(hsm, new UnavailableStore('postgres', err)));
  expect(out.ok).toBe(false);
  expect(out.hsm.ok).toBe(true);
  expect(out.database).toMatchObject({ ok: false, kind: 'postgres', error: expect.stringMatching(/ECONNREFUSED/) });
});

test('an HSM that is down is reported with its reason', async () => {
  const down = new UnavailableHsm('master', 'gone', new HsmError('HSM_UNAVAILABLE', 'C_Login failed: CKR_PIN_LOCKED', 0xa4, 'C_Login'));
  const out = await health({}, contextFor(down, store));
  expect(out.ok).toBe(false);
  expect(out.hsm).toMatchObject({ ok: false, error: 'C_Login failed: CKR_PIN_LOCKED' });
  expect(out.masterKey.ok).toBe(false);
  expect(out.database.ok).toBe(true);
});

test('an unknown kind is UNSUPPORTED_KIND', () => {
  expect(() => handlerFor('decrypt')).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_KIND' }));
  expect(() => handlerFor('toString')).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_KIND' }));
  expect(() => handlerFor(undefined)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_KIND' }));
});
