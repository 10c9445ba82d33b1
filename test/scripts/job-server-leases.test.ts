// Leases on the job server over real mutual TLS: an expired lease goes back with attempt + 1 and
// the same id and input, late answers get 409, and close() and waitForCompletion behave.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer } from '../../scripts/job-server.js';
import type { JobServer } from '../../scripts/job-server.js';
import { call, identity, makePki, serverTls, until } from './helpers.js';

const pki = makePki('driver-a', 'driver-b');
const a = identity(pki, 'driver-a');
const b = identity(pki, 'driver-b');
const tls = () => serverTls(pki);
afterAll(() => pki.remove());

const post = (who: typeof a, id: string, type: 'result' | 'error', body: unknown, srv: JobServer) =>
  call(srv.url, who, 'POST', `/v1/jobs/${encodeURIComponent(id)}/${type}`, body);

describe('job server leases', () => {
  let fast: JobServer;
  beforeAll(async () => {
    fast = await startJobServer({ ...tls(), leaseSeconds: 1 });
  });
  afterAll(() => fast.close());

  test('an expired lease is handed out again with attempt 2, same id and input; the late answer → 409', async () => {
    const input = { keyId: 'k_1', algorithm: 'ecdsa-p256' };
    const id = fast.enqueue('keygen', input);
    const first = await call(fast.url, a, 'GET', '/v1/jobs/next?wait=0');
    expect(first.json).toMatchObject({ id, kind: 'keygen', attempt: 1, input });
    const start = Date.now();
    const second = await call(fast.url, b, 'GET', '/v1/jobs/next?wait=5');
    expect(Date.now() - start).toBeGreaterThanOrEqual(900);
    expect(second.status).toBe(200);
    expect(second.json).toMatchObject({ id, kind: 'keygen', attempt: 2, input });
    expect(Date.parse((second.json as { leaseExpiresAt: string }).leaseExpiresAt)).toBeGreaterThan(Date.parse((first.json as { leaseExpiresAt: string }).leaseExpiresAt));

    expect((await post(a, id, 'result', { output: { late: true } }, fast)).status).toBe(409);
    expect((await post(b, id, 'result', { output: { keyId: 'k_1' } }, fast)).status).toBe(204);
    const job = fast.job(id)!;
    expect(job).toMatchObject({ state: 'completed', attempt: 2, leasedBy: 'driver-b', result: { keyId: 'k_1' } });
    expect(job.leases.map((l) => [l.by, l.attempt])).toEqual([['driver-a', 1], ['driver-b', 2]]);
    expect(job.answers.map((x) => [x.by, x.status])).toEqual([['driver-a', 409], ['driver-b', 204]]);
  });

  test('an answer after expiry is refused even before anyone re-leases the job', async () => {
    const id = fast.enqueue('health', {});
    await call(fast.url, a, 'GET', '/v1/jobs/next?wait=0');
    await new Promise((r) => setTimeout(r, 1100));
    expect(fast.job(id)).toMatchObject({ state: 'queued', attempt: 2 });
    const late = await post(a, id, 'result', { output: {} }, fast);
    expect(late.status).toBe(409);
    expect(late.json).toEqual({ error: 'lease expired' });
    const again = await call(fast.url, a, 'GET', '/v1/jobs/next?wait=0');
    expect(again.json).toMatchObject({ id, attempt: 2 });
    expect((await post(a, id, 'result', { output: { ok: true } }, fast)).status).toBe(204);
  });

  test('waitForCompletion times out with the job state', async () => {
    const id = fast.enqueue('health', {});
    await expect(fast.waitForCompletion(id, 100)).rejects.toThrow(/not completed after 100 ms/);
    await expect(fast.waitForCompletion('j_unknown', 100)).rejects.toThrow(/unknown job/);
  });

  test('close() ends an open long poll at once', async () => {
    const closing = await startJobServer(tls());
    const poll = call(closing.url, a, 'GET', '/v1/jobs/next?wait=30');
    await until(() => closing.stats().openPolls === 1);
    const start = Date.now();
    await closing.close();
    expect((await poll).status).toBe(204);
    expect(Date.now() - start).toBeLessThan(2000);
  });
});
