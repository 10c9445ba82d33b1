// Two drivers with their own client certificates on one PostgreSQL database, beyond what
// test/runtime/driver/active-active.test.ts shows: one is SIGKILLed mid-run and the other finishes
// every job, including those the dead one held; and keygens for one keyId delivered to both at
// the same moment really race (each driver generates, one insert wins) and still give one key.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { startJobServer, type JobServer } from '../../scripts/job-server.js';
import { feed } from '../../scripts/soak/kill-loop.js';
import { Ledger, serverSink, WRAPPED_ALGORITHMS, type KeyReport } from '../../scripts/soak/ledger.js';
import { makePki, serverTls, type Pki } from '../scripts/helpers.js';
import { spawnDriver, stateIs, type DriverProcess } from '../support/driver.js';
import { ownToken, rowsAgainstReports, waitFor, type SqliteLook } from '../support/faults.js';
import { usePostgresDatabase } from '../support/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'fault-two-'));
const pgUrl = usePostgresDatabase();
let pki: Pki;
let server: JobServer;
let token: Record<string, string>;
let drivers: DriverProcess[] = [];

beforeAll(async () => {
  pki = makePki('driver-a', 'driver-b');
  // Both drivers on one token copy of this file's own: a SIGKILL must never risk the shared one.
  token = ownToken(join(dir, 'token'), 'hsm-driver-two');
});
// A job server per test: a job a failed test left queued must not reach the next test's driver.
beforeEach(async () => {
  server = await startJobServer({ ...serverTls(pki), leaseSeconds: 3 });
});
afterEach(async () => {
  await Promise.all(drivers.map((d) => d.stop()));
  drivers = [];
  await server?.close();
});
afterAll(async () => {
  pki?.remove();
  rmSync(dir, { recursive: true, force: true });
});

function startBoth(): DriverProcess[] {
  drivers = (['driver-a', 'driver-b'] as const).map((name) =>
    spawnDriver({
      pki,
      proxyAddr: server.proxyAddr,
      sqlitePath: join(dir, 'unused.db'),
      clientCert: `${name}-chain.pem`,
      clientKey: `${name}.key`,
      env: { ...token, LOG_LEVEL: 'info' },
      args: ['--postgres-url', pgUrl(), '--sessions', '2', '--concurrency', '4'],
    }),
  );
  return drivers;
}

async function storedRows(): Promise<SqliteLook['rows']> {
  const client = new pg.Client({ connectionString: pgUrl() });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT key_id, algorithm, public_key_der, wrapped_key, resident_id FROM keys ORDER BY key_id');
    return rows.map((r) => ({
      keyId: String(r.key_id),
      algorithm: String(r.algorithm),
      publicKeyDer: (r.public_key_der as Buffer).toString('base64'),
      hasWrapped: Buffer.isBuffer(r.wrapped_key) && r.wrapped_key.length > 0,
      hasResident: Buffer.isBuffer(r.resident_id) && r.resident_id.length > 0,
    }));
  } finally {
    await client.end();
  }
}

test('one driver SIGKILLed mid-run: the other finishes every job, the dead one\'s leases included', { timeout: 180_000 }, async () => {
  const [a, b] = startBoth() as [DriverProcess, DriverProcess];
  await Promise.all([a, b].map((d) => d.waitForLog(stateIs('running'))));
  const ledger = new Ledger(serverSink(server), { prefix: 'two.', algorithms: WRAPPED_ALGORITHMS, signsPerKey: 2, duplicateEvery: 3 });
  const keys = feed(ledger, { keysPerSecond: 10, keys: 120 });
  try {
    // Mid-run: driver-a has done some work and holds leases right now.
    const aDone = () => server.jobs().filter((j) => j.state === 'completed' && j.leasedBy === 'driver-a').length;
    await waitFor('driver-a to finish 20 jobs', () => aDone() >= 20, 60_000);
    // Ledger jobs take a few ms each, too short to catch in a lease every time on a busy machine:
    // a burst of RSA-3072 keygens (each hundreds of ms in SoftHSM) keeps both drivers holding some.
    for (let i = 0; i < 8; i++) server.enqueue('keygen', { keyId: `two.burst.${i}`, algorithm: 'rsa-3072' });
    await waitFor('driver-a to hold a lease', () => server.jobs().some((j) => j.state === 'leased' && j.leasedBy === 'driver-a'), 30_000);
    a.proc.kill('SIGKILL');
    const heldByA = server.jobs().filter((j) => j.state === 'leased' && j.leasedBy === 'driver-a').map((j) => j.id);
    expect(await a.exited).toBeNull();

    await keys.fed;
    await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 120_000);
    await keys.stop();
    await ledger.sync(true);
    const { problems, figures } = ledger.check();
    console.info(`two drivers, one killed: ${JSON.stringify({ heldByA: heldByA.length, ...figures })}`);
    expect(problems).toEqual([]);
    expect(heldByA.length).toBeGreaterThan(0);
    for (const id of heldByA) {
      const job = server.job(id)!;
      expect(job.state).toBe('completed');
      // Whatever driver-a had posted before it died, the job ended by driver-b after the lease ran out.
      if (job.answers.every((ans) => ans.by !== 'driver-a' || ans.status !== 204)) expect(job.leases.at(-1)!.by).toBe('driver-b');
    }
    expect(b.proc.exitCode).toBeNull();
    expect(rowsAgainstReports(await storedRows(), ledger.reports())).toEqual([]);
    expect((await b.stop()).code).toBe(0);
  } finally {
    await keys.stop();
  }
});

test('keygens for one keyId delivered to both drivers at once: both generate, one insert wins, one key', { timeout: 120_000 }, async () => {
  const both = startBoth();
  await Promise.all(both.map((d) => d.waitForLog(stateIs('running'))));
  // RSA-2048 keygens take long enough that every job has read "no such key" before any insert.
  const keyIds = ['race.0', 'race.1', 'race.2', 'race.3'];
  const ledger = new Ledger(serverSink(server), { prefix: 'race.', algorithms: ['rsa-2048'], signsPerKey: 1, duplicateEvery: 0 });
  for (const keyId of keyIds) await ledger.addRacingKeygens(keyId, 'rsa-2048', 8);
  await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 90_000);
  await ledger.sync(true);
  const { problems, figures } = ledger.check();
  expect(problems).toEqual([]);
  expect(figures.signaturesVerified).toBe(keyIds.length);

  const lost = both.map((d) => d.logs.filter((l) => l.msg === 'keygen race lost to another driver; returning the stored key').length);
  console.info(`racing keygens: ${JSON.stringify({ lostByDriver: lost, ...figures })}`);
  expect(lost[0]! + lost[1]!).toBeGreaterThan(0);
  const answeredBy = new Set(server.jobs().filter((j) => j.id.startsWith('race.j')).map((j) => j.leasedBy));
  expect(answeredBy).toEqual(new Set(['driver-a', 'driver-b']));
  const rows = (await storedRows()).filter((r) => r.keyId.startsWith('race.'));
  expect(rows.map((r) => r.keyId)).toEqual(keyIds);
  expect(rowsAgainstReports(rows, ledger.reports() as Map<string, KeyReport>)).toEqual([]);
});
