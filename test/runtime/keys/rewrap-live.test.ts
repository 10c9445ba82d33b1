// Master-key rotation of 1,000 keys while a driver signs continuously, on PostgreSQL: a first
// `keys rewrap` is killed (SIGKILL) partway; two more then run at once. No sign job fails, every
// row ends under the new master key with exactly one rewrap record in the audit trail, and once
// the old master key is deleted from the token every key still signs.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, expect, test } from 'vitest';
import { spawnDriver, stateIs, useRunFixture } from '../../support/driver.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { ownToken, pkcs11Tool } from '../../support/token.js';

const fx = useRunFixture('rewrap-live', ['driver']);
const pgUrl = usePostgresDatabase();
const dir = mkdtempSync(join(tmpdir(), 'rewrap-live-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KEYS = 1000;
const NEXT = 'master-2027';

async function sql<T = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: pgUrl() });
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** `hsm-driver keys rewrap` as a child process (the bundle), on this file's token. */
function rewrap(token: Record<string, string>) {
  const env = { ...process.env, ...token, POSTGRES_URL: pgUrl(), LOG_LEVEL: 'warn' };
  const proc = spawn(process.execPath, [process.env.HSM_DRIVER_BUNDLE!, 'keys', 'rewrap', '--to-master-key', NEXT], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, exited, out: () => stdout, err: () => stderr };
}

const movedRows = async () => Number((await sql<{ n: string }>('SELECT count(*) AS n FROM keys WHERE master_key_label = $1', [NEXT]))[0]!.n);

test('1,000 keys rotate to a new master key under load, through a kill and two concurrent runs', { timeout: 300_000 }, async () => {
  const tokenDir = join(dir, 'token');
  const before = ownToken(tokenDir, 'hsm-driver-rewrap-live');
  const server = fx.server;

  // The keys, made by a driver still on the old master key.
  const maker = spawnDriver({ pki: fx.pki, proxyAddr: server.proxyAddr, sqlitePath: fx.freshDb(), env: { ...before, LOG_LEVEL: 'info' }, args: ['--postgres-url', pgUrl(), '--sessions', '2'] });
  await maker.waitForLog(stateIs('running'));
  const keyIds = Array.from({ length: KEYS }, (_, i) => `rot.${String(i).padStart(4, '0')}`);
  const made = await Promise.all(keyIds.map((keyId) => server.waitForCompletion(server.enqueue('keygen', { keyId, algorithm: 'ecdsa-secp256k1' }), 120_000)));
  expect(made.filter((j) => j.result === undefined)).toEqual([]);
  await maker.stop();

  // The ceremony adds the new master key; the drivers restart on it (new keys go under it),
  // and sign old rows under whichever master key each row names.
  const after = ownToken(tokenDir, 'hsm-driver-rewrap-live', { MASTER_KEY_LABEL: NEXT });
  expect(after.MASTER_KEY_LABEL).toBe(NEXT);
  fx.driver = spawnDriver({ pki: fx.pki, proxyAddr: server.proxyAddr, sqlitePath: fx.freshDb(), env: { ...after, LOG_LEVEL: 'info' }, args: ['--postgres-url', pgUrl(), '--sessions', '2'] });
  await fx.driver.waitForLog(stateIs('running'));
  let signing = true;
  const signFailures: unknown[] = [];
  let signed = 0;
  const signer = (async () => {
    for (let i = 0; signing; i++) {
      const job = await server.waitForCompletion(server.enqueue('sign', { keyId: keyIds[(i * 37) % KEYS], data: '5a'.repeat(32), encoding: 'digest' }), 30_000);
      if (job.result === undefined) signFailures.push(job.error);
      else signed++;
    }
  })();

  // A first rewrap, killed once some batches are in.
  const first = rewrap(after);
  for (;;) {
    if ((await movedRows()) >= 300 || first.proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  first.proc.kill('SIGKILL');
  await first.exited;
  const movedAtKill = await movedRows();
  expect(movedAtKill).toBeGreaterThanOrEqual(300);
  expect(movedAtKill).toBeLessThan(KEYS);

  // Two more at once finish the job between them.
  const [second, third] = [rewrap(after), rewrap(after)];
  expect(await second.exited, second.err()).toBe(0);
  expect(await third.exited, third.err()).toBe(0);
  for (const run of [second, third]) expect(run.out()).toMatch(/keys rewrap: \d+ rewrapped/);

  signing = false;
  await signer;
  expect(signFailures).toEqual([]);
  expect(signed).toBeGreaterThan(0);

  expect(await movedRows()).toBe(KEYS);
  const records = await sql<{ key_id: string; n: string }>("SELECT key_id, count(*) AS n FROM audit_records WHERE kind = 'keys-rewrap' AND outcome = 'ok' GROUP BY key_id");
  expect(records).toHaveLength(KEYS);
  expect(records.filter((r) => r.n !== '1')).toEqual([]);

  // The old master key goes; every key still signs.
  pkcs11Tool(after, ['--delete-object', '--type', 'secrkey', '--label', 'master']);
  const finals = await Promise.all(keyIds.map((keyId) => server.waitForCompletion(server.enqueue('sign', { keyId, data: '6b'.repeat(32), encoding: 'digest' }), 120_000)));
  expect(finals.filter((j) => j.result === undefined).map((j) => j.error)).toEqual([]);
});
