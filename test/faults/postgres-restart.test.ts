// PostgreSQL going away under a running driver, on a server of this file's own (the machine's
// shared cluster on 5432 is never touched): stopped mid-run, the driver degrades, /readyz says
// why, jobs wait in the queue, and all resumes by itself once the server is back; crashed and
// restarted under load, every job is answered with a result or a retryable
// DATABASE_UNAVAILABLE, and a client retrying those ends with one key per keyId.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { startJobServer, type JobServer } from '../../scripts/job-server.js';
import { feed } from '../../scripts/soak/kill-loop.js';
import { Ledger, serverSink, WRAPPED_ALGORITHMS } from '../../scripts/soak/ledger.js';
import { makePki, serverTls, type Pki } from '../scripts/helpers.js';
import { spawnDriver, stateIs, type DriverProcess } from '../support/driver.js';
import { readyz, rowsAgainstReports, states, unseenLeases, waitFor, type SqliteLook } from '../support/faults.js';
import { OwnPostgres } from '../support/own-postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'fault-pg-'));
let pki: Pki;
let server: JobServer;
let postgres: OwnPostgres;
let driver: DriverProcess | undefined;

beforeAll(async () => {
  pki = makePki('driver');
  postgres = await OwnPostgres.create();
});
// A job server per test: a job a failed test left queued must not reach the next test's driver.
beforeEach(async () => {
  server = await startJobServer({ ...serverTls(pki), leaseSeconds: 5 });
});
afterEach(async () => {
  await driver?.stop();
  driver = undefined;
  await server?.close();
});
afterAll(async () => {
  postgres?.remove();
  pki?.remove();
  rmSync(dir, { recursive: true, force: true });
});

function start(): DriverProcess {
  driver = spawnDriver({ pki, proxyAddr: server.proxyAddr, sqlitePath: join(dir, 'unused.db'), env: { LOG_LEVEL: 'info' }, args: ['--postgres-url', postgres.url(), '--metrics-addr', '127.0.0.1:0'] });
  return driver;
}

async function storedRows(): Promise<SqliteLook['rows']> {
  const client = new pg.Client({ connectionString: postgres.url() });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT key_id, algorithm, public_key_der, wrapped_key, resident_id FROM keys');
    return rows.map((r) => ({
      keyId: String(r.key_id),
      algorithm: String(r.algorithm),
      publicKeyDer: (r.public_key_der as Buffer).toString('base64'),
      hasWrapped: Buffer.isBuffer(r.wrapped_key),
      hasResident: Buffer.isBuffer(r.resident_id),
    }));
  } finally {
    await client.end();
  }
}

test('stopped mid-run: degraded, /readyz 503 naming the database, jobs wait, and all resumes once it is back', { timeout: 180_000 }, async () => {
  const d = start();
  await d.waitForLog(stateIs('running'));
  expect((await readyz(d)).status).toBe(200);
  const ledger = new Ledger(serverSink(server), { prefix: 'pgstop.', algorithms: WRAPPED_ALGORITHMS, signsPerKey: 2, duplicateEvery: 4, retryCodes: ['DATABASE_UNAVAILABLE'] });
  const keys = feed(ledger, { keysPerSecond: 8, keys: 80 });
  try {
    await waitFor('20 jobs done before the stop', () => ledger.completedCount() >= 20, 60_000);
    postgres.stop('fast');
    await d.waitForLog(stateIs('degraded'), 30_000);
    const down = await readyz(d);
    expect(down.status).toBe(503);
    expect(down.text).toMatch(/^not ready: database: /);
    // While degraded the driver leases nothing: jobs enqueued now wait for it.
    const waiting = ['a', 'b', 'c'].map((n) => server.enqueue('health', {}, { id: `pgstop.health.${n}` }));
    await new Promise((r) => setTimeout(r, 3000));
    for (const id of waiting) expect(server.job(id)!.leases).toEqual([]);

    postgres.start();
    await waitFor('/readyz to be 200 again', async () => (await readyz(d)).status === 200, 30_000);
    for (const id of waiting) expect((await server.waitForCompletion(id, 30_000)).result).toMatchObject({ ok: true, database: { ok: true, kind: 'postgres' } });
    await keys.fed;
    await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 120_000);
    await keys.stop();
    await ledger.sync(true);
    const { problems, figures } = ledger.check();
    console.info(`postgres stopped: ${JSON.stringify({ states: states(d), ...figures })}`);
    expect(problems).toEqual([]);
    expect(states(d).slice(0, 4)).toEqual(['starting', 'running', 'degraded', 'running']);
    expect(d.logs.some((l) => l.msg === 'part is down' && l.part === 'database')).toBe(true);
    expect(unseenLeases(server.jobs(), [d])).toEqual([]);
    expect(rowsAgainstReports(await storedRows(), ledger.reports())).toEqual([]);
    expect((await d.stop()).code).toBe(0);
  } finally {
    await keys.stop();
  }
});

test('crashed (pg_ctl stop -m immediate) and restarted under load: results or retryable DATABASE_UNAVAILABLE, one key per keyId', { timeout: 180_000 }, async () => {
  const d = start();
  await d.waitForLog(stateIs('running'));
  const ledger = new Ledger(serverSink(server), { prefix: 'pgcrash.', algorithms: WRAPPED_ALGORITHMS, signsPerKey: 2, duplicateEvery: 4, retryCodes: ['DATABASE_UNAVAILABLE'] });
  const keys = feed(ledger, { keysPerSecond: 10, keys: 80 });
  try {
    await waitFor('20 jobs done before the crash', () => ledger.completedCount() >= 20, 60_000);
    postgres.restart('immediate');
    await waitFor('20 more jobs done after the restart', () => ledger.completedCount() >= 40, 60_000);
    postgres.restart('immediate');
    await keys.fed;
    await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 120_000);
    await keys.stop();
    await ledger.sync(true);
    const { problems, figures } = ledger.check();
    console.info(`postgres crashed twice: ${JSON.stringify({ states: states(d), ...figures })}`);
    expect(problems).toEqual([]);
    expect(unseenLeases(server.jobs(), [d])).toEqual([]);
    expect(d.proc.exitCode).toBeNull();
    await waitFor('/readyz to be 200', async () => (await readyz(d)).status === 200, 30_000);
    const stored = await storedRows();
    expect(rowsAgainstReports(stored, ledger.reports())).toEqual([]);
    expect(stored.filter((r) => r.keyId.startsWith('pgcrash.'))).toHaveLength(80);
  } finally {
    await keys.stop();
  }
});
