// `hsm-driver run` when things around it fail, all for real: a server it must not trust, a
// client certificate the server must refuse, the job API going away and coming back, the
// token's storage vanishing and returning, and a database that does not exist yet.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { startJobServer } from '../../../scripts/job-server.js';
import { readEnvFile } from '../../support/global-setup.js';
import { serverTls } from '../../scripts/helpers.js';
import { TARGETS, spawnDriver, stateIs, useRunFixture, type LogLine } from '../../support/driver.js';
import { admin, urlForDatabase } from '../../support/postgres.js';

const fx = useRunFixture('run-faults', ['driver']);
const dir = mkdtempSync(join(tmpdir(), 'run-faults-token-'));
const pollFailed = (pattern: RegExp) => (l: LogLine) => l.msg === 'poll failed, backing off' && pattern.test(String(l.err));
describe.each(TARGETS)('hsm-driver run as the %s', (t) => {
  beforeAll(() => {
    fx.target = t;
  });

  test('a server whose certificate does not chain to --ca-cert is not trusted, and the driver keeps trying', async () => {
    const id = fx.server.enqueue('health', {});
    fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), caCert: 'rogue-ca.pem' });
    await fx.driver.waitForLog(pollFailed(/CERT|certificate|SELF_SIGNED|verify/i));
    await fx.driver.waitForLog(pollFailed(/./), 5000); // again, after a backoff: it never exits on API faults
    expect(fx.server.job(id)!.state).toBe('queued');
    expect(fx.driver.proc.exitCode).toBeNull();
    expect((await fx.driver.stop()).code).toBe(0);
    fx.server.job(id) && (await driverDrains(id));
  });

  /** Lets a well-configured driver take a leftover job, so later tests start from an empty queue. */
  async function driverDrains(id: string): Promise<void> {
    const d = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb() });
    await fx.server.waitForCompletion(id, 20_000);
    await d.stop();
  }

  test('a client certificate from another CA is refused by the server', async () => {
    const refusedBefore = fx.server.stats().tlsRefused;
    const id = fx.server.enqueue('health', {});
    fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), clientCert: 'rogue.pem', clientKey: 'rogue.key' });
    await fx.driver.waitForLog(pollFailed(/./));
    expect(fx.server.stats().tlsRefused).toBeGreaterThan(refusedBefore);
    expect(fx.server.job(id)!.leases).toEqual([]);
    await fx.driver.stop();
    await driverDrains(id);
  });

  test('the job API going down and coming back: the driver backs off, then resumes by itself', async () => {
    const first = await startJobServer(serverTls(fx.pki));
    const port = first.port;
    fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: first.proxyAddr, sqlitePath: fx.freshDb() });
    await first.waitForCompletion(first.enqueue('health', {}), 20_000);
    await first.close();
    await fx.driver.waitForLog(pollFailed(/ECONNREFUSED|ECONNRESET|closed|other side/i));
    const second = await startJobServer({ ...serverTls(fx.pki), port });
    try {
      const job = await second.waitForCompletion(second.enqueue('health', {}), 20_000);
      expect(job.result).toMatchObject({ ok: true });
      expect(fx.driver.proc.exitCode).toBeNull();
    } finally {
      await fx.driver.stop();
      await second.close();
    }
  });

  test('the token going away: the driver stops polling, and resumes when it is back', async () => {
    // A token of this test's own: its storage is taken away under the running fx.driver.
    const envFile = execFileSync('bash', [join(import.meta.dirname, '../../../scripts/dev-hsm.sh'), join(dir, 'token')], {
      env: { ...process.env, TOKEN_LABEL: 'hsm-driver-outage' },
      encoding: 'utf8',
    }).trim();
    const token = readEnvFile(envFile);
    const tokens = join(dir, 'token', 'tokens');
    fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), env: token });
    await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId: 'outage.k', algorithm: 'ecdsa-p256' }), 20_000);

    renameSync(tokens, `${tokens}.away`);
    await fx.driver.waitForLog(stateIs('degraded'), 10_000);
    // The driver ended its pending long poll; wait until the server has seen that connection go.
    for (let i = 0; i < 100 && fx.server.stats().openPolls > 0; i++) await new Promise((r) => setTimeout(r, 20));
    const pollsWhileDown = fx.server.polls().length;
    const id = fx.server.enqueue('sign', { keyId: 'outage.k', data: '33'.repeat(32), encoding: 'digest' });
    await new Promise((r) => setTimeout(r, 2500));
    expect(fx.server.job(id)!.state).toBe('queued'); // other drivers would take it meanwhile
    expect(fx.server.polls().length).toBe(pollsWhileDown);

    renameSync(`${tokens}.away`, tokens);
    const job = await fx.server.waitForCompletion(id, 20_000);
    expect(job.result).toHaveProperty('der');
    const states = fx.driver.logs.filter((l) => l.msg === 'driver state').map((l) => l.state);
    expect(states.slice(0, 4)).toEqual(['starting', 'running', 'degraded', 'running']);
    expect(fx.driver.logs.some((l) => l.msg === 'part is down' && l.part === 'hsm')).toBe(true);
  });

  test('a database that does not exist yet: degraded at start, running once it is created', async () => {
    const name = `hsm_late_${process.pid}_${Date.now()}`;
    fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), args: ['--postgres-url', urlForDatabase(name)] });
    try {
      await fx.driver.waitForLog(stateIs('degraded'), 15_000);
      const id = fx.server.enqueue('health', {});
      await new Promise((r) => setTimeout(r, 1500));
      expect(fx.server.job(id)!.state).toBe('queued');
      await admin(`CREATE DATABASE ${name}`);
      const job = await fx.server.waitForCompletion(id, 20_000);
      expect(job.result).toMatchObject({ ok: true, database: { ok: true, kind: 'postgres', keys: 0 } });
    } finally {
      await fx.driver.stop();
      fx.driver = undefined;
      await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });

  test('certificates that are missing or do not match the key are refused at start with one line', async () => {
    const cases: Array<[Partial<Parameters<typeof spawnDriver>[0]>, RegExp]> = [
      [{ clientKey: 'rogue.key' }, /^hsm-driver: client key .* does not match the certificate/],
      [{ clientCert: 'absent.pem' }, /^hsm-driver: client certificate .*absent.pem cannot be read \(ENOENT\)$/],
    ];
    for (const [opts, line] of cases) {
      const d = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), ...opts });
      expect(await d.exited).toBe(2);
      const lines = d.stderr().split('\n').filter((l) => l.startsWith('hsm-driver:'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(line);
    }
  });

  test('429 and 5xx answers to a poll are backed off from, then the job is taken', async () => {
    fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb() });
    await fx.driver.waitForLog(stateIs('running'));
    fx.server.failNextPolls(2, 429);
    await fx.driver.waitForLog(pollFailed(/429/));
    fx.server.failNextPolls(2, 503);
    const id = fx.server.enqueue('health', {});
    await fx.driver.waitForLog(pollFailed(/503/));
    expect((await fx.server.waitForCompletion(id, 20_000)).result).toMatchObject({ ok: true });
    const delays = fx.driver.logs.filter((l) => l.msg === 'poll failed, backing off').map((l) => l.delayMs as number);
    expect(delays.length).toBeGreaterThanOrEqual(2);
    expect(Math.max(...delays)).toBeLessThanOrEqual(1000); // --backoff-max 1
  });
});
