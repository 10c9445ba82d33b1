// `hsm-driver run` over real mTLS against the reference job server: every kind, bad jobs,
// parallel jobs, a lease that expires mid-job, SIGTERM with jobs in flight, and the PIN.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { startJobServer } from '../../../scripts/job-server.js';
import { call, identity, serverTls } from '../../scripts/helpers.js';
import { TARGETS, spawnDriver, stateIs, useRunFixture } from '../../support/driver.js';
import { opensslVerifyRaw } from '../../support/openssl.js';

const fx = useRunFixture('run-jobs', ['driver', 'other'], { leaseSeconds: 30 });
const start = (o: Partial<Parameters<typeof spawnDriver>[0]> = {}) =>
  (fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), ...o }));

describe.each(TARGETS)('hsm-driver run as the %s', (t) => {
  beforeAll(() => {
    fx.target = t;
  });

  describe('jobs', () => {
    test('keygen, sign and health are answered; unknown and malformed jobs get their codes and the loop goes on', async () => {
      start();
      const keygen = fx.server.enqueue('keygen', { keyId: 'run.k1', algorithm: 'ecdsa-secp256k1' });
      // Jobs run in parallel: the key must exist before its sign is queued.
      await fx.server.waitForCompletion(keygen, 20_000);
      const digest = '11'.repeat(32);
      const sign = fx.server.enqueue('sign', { keyId: 'run.k1', data: digest, encoding: 'digest' });
      const bad = [
        fx.server.enqueue('decrypt', {}),
        fx.server.enqueueRaw({ input: {} }), // no kind
        fx.server.enqueueRaw({ kind: 'sign' }), // no input
        fx.server.enqueueRaw({ kind: 42, input: {} }),
        fx.server.enqueue('sign', { keyId: 'run.k1', data: 'zz', encoding: 'digest' }),
        fx.server.enqueue('keygen', { keyId: 'run.k2', algorithm: 'dsa' }),
      ];
      const health = fx.server.enqueue('health', {});
      const done = await Promise.all([keygen, sign, ...bad, health].map((id) => fx.server.waitForCompletion(id, 20_000)));
      const [k, s] = done as Array<{ result: Record<string, string> }>;
      const spki = Buffer.from(k!.result.publicKeyDer!, 'base64');
      expect(opensslVerifyRaw(spki, Buffer.from(digest, 'hex'), Buffer.from(s!.result.der!, 'hex'))).toBe(true);
      expect(done.slice(2, 8).map((j) => (j.error as { code: string }).code)).toEqual([
        'UNSUPPORTED_KIND',
        'UNSUPPORTED_KIND',
        'INVALID_INPUT',
        'UNSUPPORTED_KIND',
        'INVALID_INPUT',
        'UNSUPPORTED_ALGORITHM',
      ]);
      expect(done[8]!.result).toMatchObject({ ok: true, hsm: { ok: true }, database: { ok: true, kind: 'sqlite', keys: 1 } });
      expect(done.every((j) => j.answers.length === 1 && j.answers[0]!.userAgent === `hsm-driver/${version()}`)).toBe(true);
    });

    test('jobs run in parallel up to --concurrency and all are answered', async () => {
      start({ args: ['--concurrency', '4', '--sessions', '4'] });
      await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId: 'par.k', algorithm: 'ecdsa-p256' }), 20_000);
      const ids = Array.from({ length: 60 }, (_, i) => fx.server.enqueue('sign', { keyId: 'par.k', data: (i + 1).toString(16).padStart(64, '0'), encoding: 'digest' }));
      const done = await Promise.all(ids.map((id) => fx.server.waitForCompletion(id, 30_000)));
      expect(done.every((j) => j.result !== undefined)).toBe(true);
      const leases = done.map((j) => Date.parse(j.leases[0]!.at));
      const answers = done.map((j) => Date.parse(j.answers[0]!.at));
      const overlap = Math.max(...leases.map((t) => leases.filter((u, i) => u <= t && answers[i]! >= t).length));
      expect(overlap).toBeGreaterThan(1);
      expect(overlap).toBeLessThanOrEqual(4);
    });

    test('a lease that expires mid-job is re-delivered and answered with the same key', async () => {
      const short = await startJobServer({ ...serverTls(fx.pki), leaseSeconds: 2 });
      try {
        const id = short.enqueue('keygen', { keyId: 'lease.k', algorithm: 'ecdsa-p256' });
        // "Driver A" leases the job, does the keygen (it commits), then dies before answering.
        const first = await call(short.url, identity(fx.pki, 'other', 'hsm-driver/test'), 'GET', '/v1/jobs/next?wait=1');
        expect(first.status).toBe(200);
        const sqlitePath = fx.freshDb();
        fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: short.proxyAddr, sqlitePath, args: ['--poll-wait', '1'] });
        const job = await short.waitForCompletion(id, 20_000);
        expect(job.attempt).toBe(2);
        expect(job.leases.map((l) => l.by)).toEqual(['other', 'driver']);
        // Driver B repeats the keygen of the same keyId: idempotent, so the answer is the stored key.
        const again = short.enqueue('keygen', { keyId: 'lease.k', algorithm: 'ecdsa-p256' });
        expect((await short.waitForCompletion(again, 20_000)).result).toEqual(job.result);
        // Driver A's late answer is refused.
        const late = await call(short.url, identity(fx.pki, 'other', 'hsm-driver/test'), 'POST', `/v1/jobs/${id}/result`, { output: {} });
        expect(late.status).toBe(409);
      } finally {
        await fx.driver?.stop('SIGKILL');
        await short.close();
      }
    });
  });

  describe('stopping', () => {
    test('SIGTERM with jobs in flight: each is answered or re-leased, exit 0 within 10 s', async () => {
      const short = await startJobServer({ ...serverTls(fx.pki), leaseSeconds: 3 });
      try {
        fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: short.proxyAddr, sqlitePath: fx.freshDb(), args: ['--concurrency', '2', '--sessions', '2'] });
        await fx.driver.waitForLog(stateIs('running'));
        const ids = Array.from({ length: 8 }, (_, i) => short.enqueue('keygen', { keyId: `stop.${i}`, algorithm: 'rsa-3072' }));
        await fx.driver.waitForLog((l) => l.msg === 'job done' && ids.includes(l.jobId as string), 30_000);
        const { code, ms } = await fx.driver.stop('SIGTERM');
        expect(code).toBe(0);
        expect(ms).toBeLessThan(10_000);
        expect(fx.driver.logs.filter((l) => l.msg === 'driver state').map((l) => l.state)).toEqual(['starting', 'running', 'draining', 'stopped']);
        // Every job the driver started was answered. At most the one poll cut short by the stop
        // may have leased a job it never saw: that lease expires and the job goes to the next fx.driver.
        const started = new Set(fx.driver.logs.filter((l) => l.msg === 'job done').map((l) => l.jobId));
        for (const id of started) expect(short.job(id as string)!.state).toBe('completed');
        const orphaned = ids.filter((id) => short.job(id)!.state === 'leased');
        expect(orphaned.length).toBeLessThanOrEqual(1);
        fx.driver = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: short.proxyAddr, sqlitePath: fx.freshDb() });
        const done = await Promise.all(ids.map((id) => short.waitForCompletion(id, 60_000)));
        expect(done.every((j) => j.result !== undefined)).toBe(true);
        for (const id of orphaned) expect(short.job(id)!.attempt).toBe(2);
      } finally {
        await fx.driver?.stop('SIGTERM');
        await short.close();
      }
    });

    test('a second signal forces a non-zero exit', async () => {
      start({ args: ['--drain-timeout', '60'] });
      await fx.driver!.waitForLog(stateIs('running'));
      fx.server.enqueue('keygen', { keyId: 'force.1', algorithm: 'rsa-4096' });
      await fx.driver!.waitForLog((l) => l.msg === 'hsm call failed, recovering' || l.jobId !== undefined || l.state === 'draining', 1500).catch(() => undefined);
      fx.driver!.proc.kill('SIGTERM');
      const { code } = await fx.driver!.stop('SIGINT');
      expect(code).not.toBe(0);
    });
  });

  describe('restart', () => {
    test('a key made before a restart signs after it (same database, new process)', async () => {
      const sqlitePath = fx.freshDb();
      start({ sqlitePath });
      const made = await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId: `restart.${fx.target}`, algorithm: 'ecdsa-secp256k1' }), 20_000);
      expect((await fx.driver!.stop()).code).toBe(0);
      start({ sqlitePath });
      const digest = '55'.repeat(32);
      const signed = await fx.server.waitForCompletion(fx.server.enqueue('sign', { keyId: `restart.${fx.target}`, data: digest, encoding: 'digest' }), 20_000);
      const spki = Buffer.from((made.result as { publicKeyDer: string }).publicKeyDer, 'base64');
      expect(opensslVerifyRaw(spki, Buffer.from(digest, 'hex'), Buffer.from((signed.result as { der: string }).der, 'hex'))).toBe(true);
    });
  });

  describe('secrets', () => {
    test('the PIN appears in no log line, even at trace level and with a failing login', async () => {
      const pin = readFileSync(process.env.USER_PIN_FILE!, 'utf8').trim();
      start({ env: { USER_PIN: pin, USER_PIN_FILE: undefined, LOG_LEVEL: 'trace' } });
      await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId: 'pin.k', algorithm: 'ecdsa-p256' }), 20_000);
      await fx.server.waitForCompletion(fx.server.enqueue('sign', { keyId: 'pin.k', data: '22'.repeat(32), encoding: 'digest' }), 20_000);
      await fx.server.waitForCompletion(fx.server.enqueue('health', {}), 20_000);
      const { code } = await fx.driver!.stop();
      expect(code).toBe(0);
      expect(fx.driver!.stderr()).not.toContain(pin);
      expect(fx.driver!.logs.length).toBeGreaterThan(3);

      const wrong = spawnDriver({ target: fx.target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), env: { USER_PIN: 'Wr0ngPinXYZ', USER_PIN_FILE: undefined, LOG_LEVEL: 'trace' } });
      const exit = await wrong.exited;
      expect(exit).not.toBe(0);
      expect(wrong.stderr()).toMatch(/CKR_PIN_INCORRECT/);
      expect(wrong.stderr()).not.toContain('Wr0ngPinXYZ');
    });
  });
});

function version(): string {
  return JSON.parse(readFileSync(join(import.meta.dirname, '../../../package.json'), 'utf8')).version;
}
