// `hsm-driver run` when things around it fail, all for real: a server it must not trust, a
// client certificate the server must refuse, the job API going away and coming back, the
// token's storage vanishing and returning, and a database that does not exist yet.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer, type JobServer } from '../../../scripts/job-server.js';
import { readEnvFile } from '../../support/global-setup.js';
import { makePki, serverTls, type Pki } from '../../scripts/helpers.js';
import { TARGETS, spawnDriver, stateIs, type DriverProcess, type DriverTarget } from '../../support/driver.js';
import { admin, urlForDatabase } from '../../support/postgres.js';

let pki: Pki;
let server: JobServer;
let driver: DriverProcess | undefined;
/** The build under test: the bundle or the single binary (set by each describe.each block). */
let target: DriverTarget = 'bundle';
const dir = mkdtempSync(join(tmpdir(), 'run-faults-'));
let n = 0;
const freshDb = () => join(dir, `keys-${++n}.db`);
const pollFailed = (pattern: RegExp) => (l: { msg: string; err?: unknown }) => l.msg === 'poll failed, backing off' && pattern.test(String(l.err));

beforeAll(async () => {
  pki = makePki('driver');
  server = await startJobServer(serverTls(pki));
});
afterEach(async () => {
  await driver?.stop('SIGTERM');
  driver = undefined;
});
afterAll(async () => {
  await server?.close();
  pki?.remove();
});

describe.each(TARGETS)('hsm-driver run as the %s', (t) => {
  beforeAll(() => {
    target = t;
  });

  test('a server whose certificate does not chain to --ca-cert is not trusted, and the driver keeps trying', async () => {
    const id = server.enqueue('health', {});
    driver = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: freshDb(), caCert: 'rogue-ca.pem' });
    await driver.waitForLog(pollFailed(/CERT|certificate|SELF_SIGNED|verify/i));
    await driver.waitForLog(pollFailed(/./), 5000); // again, after a backoff: it never exits on API faults
    expect(server.job(id)!.state).toBe('queued');
    expect(driver.proc.exitCode).toBeNull();
    expect((await driver.stop()).code).toBe(0);
    server.job(id) && (await driverDrains(id));
  });

  /** Lets a well-configured driver take a leftover job, so later tests start from an empty queue. */
  async function driverDrains(id: string): Promise<void> {
    const d = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: freshDb() });
    await server.waitForCompletion(id, 20_000);
    await d.stop();
  }

  test('a client certificate from another CA is refused by the server', async () => {
    const refusedBefore = server.stats().tlsRefused;
    const id = server.enqueue('health', {});
    driver = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: freshDb(), clientCert: 'rogue.pem', clientKey: 'rogue.key' });
    await driver.waitForLog(pollFailed(/./));
    expect(server.stats().tlsRefused).toBeGreaterThan(refusedBefore);
    expect(server.job(id)!.leases).toEqual([]);
    await driver.stop();
    await driverDrains(id);
  });

  test('the job API going down and coming back: the driver backs off, then resumes by itself', async () => {
    const first = await startJobServer(serverTls(pki));
    const port = first.port;
    driver = spawnDriver({ target, pki, proxyAddr: first.proxyAddr, sqlitePath: freshDb() });
    await first.waitForCompletion(first.enqueue('health', {}), 20_000);
    await first.close();
    await driver.waitForLog(pollFailed(/ECONNREFUSED|ECONNRESET|closed|other side/i));
    const second = await startJobServer({ ...serverTls(pki), port });
    try {
      const job = await second.waitForCompletion(second.enqueue('health', {}), 20_000);
      expect(job.result).toMatchObject({ ok: true });
      expect(driver.proc.exitCode).toBeNull();
    } finally {
      await driver.stop();
      await second.close();
    }
  });

  test('the token going away: the driver stops polling, and resumes when it is back', async () => {
    // A token of this test's own: its storage is taken away under the running driver.
    const envFile = execFileSync('bash', [join(import.meta.dirname, '../../../scripts/dev-hsm.sh'), join(dir, 'token')], {
      env: { ...process.env, TOKEN_LABEL: 'hsm-driver-outage' },
      encoding: 'utf8',
    }).trim();
    const token = readEnvFile(envFile);
    const tokens = join(dir, 'token', 'tokens');
    driver = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: freshDb(), env: token });
    await server.waitForCompletion(server.enqueue('keygen', { keyId: 'outage.k', algorithm: 'ecdsa-p256' }), 20_000);

    renameSync(tokens, `${tokens}.away`);
    await driver.waitForLog(stateIs('degraded'), 10_000);
    // The driver ended its pending long poll; wait until the server has seen that connection go.
    for (let i = 0; i < 100 && server.stats().openPolls > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const pollsWhileDown = server.polls().length;
    const id = server.enqueue('sign', { keyId: 'outage.k', data: '33'.repeat(32), encoding: 'digest' });
    await new Promise((r) => setTimeout(r, 2500));
    expect(server.job(id)!.state).toBe('queued'); // other drivers would take it meanwhile
    expect(server.polls().length).toBe(pollsWhileDown);

    renameSync(`${tokens}.away`, tokens);
    const job = await server.waitForCompletion(id, 20_000);
    expect(job.result).toHaveProperty('der');
    const states = driver.logs.filter((l) => l.msg === 'driver state').map((l) => l.state);
    expect(states.slice(0, 4)).toEqual(['starting', 'running', 'degraded', 'running']);
    expect(driver.logs.some((l) => l.msg === 'part is down' && l.part === 'hsm')).toBe(true);
  });

  test('a database that does not exist yet: degraded at start, running once it is created', async () => {
    const name = `hsm_late_${process.pid}_${Date.now()}`;
    driver = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: freshDb(), args: ['--postgres-url', urlForDatabase(name)] });
    try {
      await driver.waitForLog(stateIs('degraded'), 15_000);
      const id = server.enqueue('health', {});
      await new Promise((r) => setTimeout(r, 1500));
      expect(server.job(id)!.state).toBe('queued');
      await admin(`CREATE DATABASE ${name}`);
      const job = await server.waitForCompletion(id, 20_000);
      expect(job.result).toMatchObject({ ok: true, database: { ok: true, kind: 'postgres', keys: 0 } });
    } finally {
      await driver.stop();
      driver = undefined;
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });

  test('certificates that are missing or do not match the key are refused at start with one line', async () => {
    const cases: Array<[Partial<Parameters<typeof spawnDriver>[0]>, RegExp]> = [
      [{ clientKey: 'rogue.key' }, /^hsm-driver: client key .* does not match the certificate/],
      [{ clientCert: 'absent.pem' }, /^hsm-driver: client certificate .*absent.pem cannot be read \(ENOENT\)$/],
    ];
    for (const [opts, line] of cases) {
      const d = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: freshDb(), ...opts });
      expect(await d.exited).toBe(2);
      const lines = d.stderr().split('\n').filter((l) => l.startsWith('hsm-driver:'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(line);
    }
  });

  test('429 and 5xx answers to a poll are backed off from, then the job is taken', async () => {
    driver = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: freshDb() });
    await driver.waitForLog(stateIs('running'));
    server.failNextPolls(2, 429);
    await driver.waitForLog(pollFailed(/429/));
    server.failNextPolls(2, 503);
    const id = server.enqueue('health', {});
    await driver.waitForLog(pollFailed(/503/));
    expect((await server.waitForCompletion(id, 20_000)).result).toMatchObject({ ok: true });
    const delays = driver.logs.filter((l) => l.msg === 'poll failed, backing off').map((l) => l.delayMs as number);
    expect(delays.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...delays)).toBeLessThanOrEqual(1000); // --backoff-max 1
  });
});
