// The job server against PROTOCOL.md over real mutual TLS: leasing, long polls and their cap,
// results and errors with 204/409/404/400, odd jobs, and fault injection.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer } from '../../scripts/job-server.js';
import type { JobServer } from '../../scripts/job-server.js';
import { call, identity, makePki, serverTls, until } from './helpers.js';
import type { Identity } from './helpers.js';

const pki = makePki('driver-a', 'driver-b');
const a = identity(pki, 'driver-a');
const b = identity(pki, 'driver-b');

let server: JobServer;
beforeAll(async () => {
  server = await startJobServer(serverTls(pki));
});
afterAll(async () => {
  await server.close();
  pki.remove();
});
// Each test leaves no job queued or leased, so the next one's polls see only its own jobs.
afterEach(async () => {
  for (let reply = await next(a); reply.status === 200; reply = await next(a)) {
    await post(a, (reply.json as { id: string }).id, 'error', { error: { code: 'INTERNAL', message: 'drained', retryable: true } });
  }
});

const next = (who: Identity, wait: number | string = 0) => call(server.url, who, 'GET', `/v1/jobs/next?wait=${wait}`);
const post = (who: Identity, id: string, type: 'result' | 'error', body: unknown, srv = server) =>
  call(srv.url, who, 'POST', `/v1/jobs/${encodeURIComponent(id)}/${type}`, body);

describe('job server protocol', () => {
  test('enqueue → next → result → 204; a second result → 409; the job keeps both answers', async () => {
    const id = server.enqueue('sign', { keyId: 'k1', data: 'ab', encoding: 'message', hash: 'sha256' });
    const leased = await next(a);
    expect(leased.status).toBe(200);
    expect(leased.headers['content-type']).toBe('application/json');
    const job = leased.json as Record<string, unknown>;
    expect(Object.keys(job)).toEqual(['id', 'kind', 'attempt', 'leaseExpiresAt', 'input']);
    expect(job).toMatchObject({ id, kind: 'sign', attempt: 1, input: { keyId: 'k1', data: 'ab', encoding: 'message', hash: 'sha256' } });
    const lease = Date.parse(job.leaseExpiresAt as string) - Date.now();
    expect(lease).toBeGreaterThan(28_000);
    expect(lease).toBeLessThanOrEqual(30_000);
    expect(server.job(id)).toMatchObject({ state: 'leased', leasedBy: 'driver-a', attempt: 1 });

    const first = await post(a, id, 'result', { output: { signature: '00' } });
    expect(first.status).toBe(204);
    expect(first.text).toBe('');
    const again = await post(a, id, 'result', { output: { signature: '00' } });
    expect(again.status).toBe(409);
    expect(again.json).toEqual({ error: 'job already completed' });
    const viaError = await post(a, id, 'error', { error: { code: 'INTERNAL', message: 'late', retryable: true } });
    expect(viaError.status).toBe(409);

    const done = server.job(id)!;
    expect(done).toMatchObject({ state: 'completed', result: { signature: '00' } });
    expect(done.answers.map((x) => [x.type, x.status, x.by])).toEqual([['result', 204, 'driver-a'], ['result', 409, 'driver-a'], ['error', 409, 'driver-a']]);
    expect(done.answers[0]!.userAgent).toBe('hsm-driver/0.0.0-test');
  });

  test('an error answer completes the job and is kept', async () => {
    const id = server.enqueue('frobnicate', {});
    const completion = server.waitForCompletion(id, 5000);
    expect((await next(a)).status).toBe(200);
    const error = { code: 'UNSUPPORTED_KIND', message: 'unsupported job kind: "frobnicate"', retryable: false };
    expect((await post(a, id, 'error', { error })).status).toBe(204);
    expect(await completion).toMatchObject({ state: 'completed', error });
  });

  test('jobs are handed out oldest first, each to one poll', async () => {
    const ids = [server.enqueue('health', {}), server.enqueue('health', {}), server.enqueue('health', {})];
    const got = [await next(a), await next(b), await next(a)].map((r) => (r.json as { id: string }).id);
    expect(got).toEqual(ids);
    expect((await next(a)).status).toBe(204);
    for (const id of ids) await post(server.job(id)!.leasedBy === 'driver-a' ? a : b, id, 'result', { output: { ok: true } });
  });

  test('an empty queue answers 204 after `wait`, and at once for wait=0', async () => {
    let start = Date.now();
    const held = await next(a, 1);
    expect(held.status).toBe(204);
    expect(Date.now() - start).toBeGreaterThanOrEqual(950);
    start = Date.now();
    expect((await next(a, 0)).status).toBe(204);
    expect(Date.now() - start).toBeLessThan(500);
  });

  test('a held poll gets a job enqueued while it waits', async () => {
    const poll = next(b, 10);
    await until(() => server.stats().openPolls === 1);
    const start = Date.now();
    const id = server.enqueue('health', {});
    const reply = await poll;
    expect(reply.status).toBe(200);
    expect((reply.json as { id: string }).id).toBe(id);
    expect(Date.now() - start).toBeLessThan(1000);
    expect((await post(b, id, 'result', { output: { ok: true } })).status).toBe(204);
  });

  test('wait is capped at 30 seconds on the server side', async () => {
    const poll = next(a, 120);
    await until(() => server.stats().openPolls === 1);
    expect(server.polls().at(-1)).toMatchObject({ by: 'driver-a', requestedWait: '120', wait: 30, status: 0 });
    const id = server.enqueue('health', {});
    expect((await poll).status).toBe(200);
    expect(server.polls().at(-1)).toMatchObject({ wait: 30, status: 200, jobId: id });
    await post(a, id, 'result', { output: { ok: true } });
  });

  test.each(['abc', '-1', ''])('wait=%j is a bad request', async (wait) => {
    const reply = await next(a, wait);
    expect(reply.status).toBe(400);
    expect(reply.json).toEqual({ error: expect.stringMatching(/wait/) });
  });

  test('404 for an unknown job id, on result and on error', async () => {
    expect((await post(a, 'j_nope', 'result', { output: {} })).status).toBe(404);
    const reply = await post(a, 'j_nope', 'error', { error: { code: 'INTERNAL', message: 'x', retryable: true } });
    expect(reply.status).toBe(404);
    expect(reply.json).toEqual({ error: 'unknown job j_nope' });
    expect(server.strayAnswers().slice(-2)).toMatchObject([
      { id: 'j_nope', type: 'result', status: 404, by: 'driver-a', body: { output: {} } },
      { id: 'j_nope', type: 'error', status: 404, by: 'driver-a' },
    ]);
  });

  test.each([
    ['result', 'not json', /not JSON/],
    ['result', [1], /JSON object/],
    ['result', {}, /"output" must be an object/],
    ['result', { output: 'x' }, /"output" must be an object/],
    ['error', { output: {} }, /"error" must be an object/],
    ['error', { error: { code: 'NOPE', message: 'x', retryable: false } }, /unknown error code/],
    ['error', { error: { code: 'INTERNAL', retryable: true } }, /message/],
    ['error', { error: { code: 'KEY_NOT_FOUND', message: 'x', retryable: true } }, /retryable.*false/],
  ] as const)('a malformed %s body %j → 400, recorded, lease kept', async (type, body, reason) => {
    const id = server.enqueue('health', {});
    await next(a);
    const reply = await post(a, id, type, body);
    expect(reply.status).toBe(400);
    expect(reply.json).toEqual({ error: expect.stringMatching(reason) });
    expect(server.job(id)).toMatchObject({ state: 'leased', answers: [{ status: 400, reason: expect.stringMatching(reason) }] });
    expect((await post(a, id, 'result', { output: { ok: true } })).status).toBe(204);
  });

  test('a body without Content-Type: application/json → 400', async () => {
    const id = server.enqueue('health', {});
    await next(a);
    const reply = await call(server.url, a, 'POST', `/v1/jobs/${id}/result`, '{"output":{}}', { 'content-type': 'text/plain' });
    expect(reply.status).toBe(400);
    expect(reply.json).toEqual({ error: expect.stringMatching(/Content-Type/) });
    await post(a, id, 'result', { output: { ok: true } });
  });

  test('an answer from a driver that does not hold the lease → 409', async () => {
    const id = server.enqueue('health', {});
    await next(a);
    expect((await post(b, id, 'result', { output: { ok: true } })).status).toBe(409);
    expect(server.job(id)!.answers.at(-1)).toMatchObject({ by: 'driver-b', status: 409, reason: 'lease held by driver-a' });
    expect((await post(a, id, 'result', { output: { ok: true } })).status).toBe(204);
  });

  test('an answer to a job never leased → 409', async () => {
    const id = server.enqueue('health', {});
    expect((await post(a, id, 'result', { output: {} })).status).toBe(409);
    expect(server.job(id)).toMatchObject({ state: 'queued', answers: [{ status: 409, reason: 'job not leased' }] });
  });

  test('failNextPolls answers the next polls with 503 (or the status given), then serves again', async () => {
    server.failNextPolls(2);
    expect((await next(a)).status).toBe(503);
    expect((await next(a)).status).toBe(503);
    expect((await next(a)).status).toBe(204);
    server.failNextPolls(1, 429);
    expect((await next(a)).status).toBe(429);
    expect((await next(a)).status).toBe(204);
    expect(server.stats().injectedFailures).toBe(3);
  });

  test('a User-Agent that is not hsm-driver/… is refused with 400 and recorded', async () => {
    const reply = await next(identity(pki, 'driver-a', 'curl/8'));
    expect(reply.status).toBe(400);
    expect(reply.json).toEqual({ error: expect.stringMatching(/User-Agent/) });
    expect(server.stats().userAgents).toEqual(expect.arrayContaining(['curl/8', 'hsm-driver/0.0.0-test']));
  });

  test('wrong methods get 405, other paths 404', async () => {
    const wrong = await call(server.url, a, 'POST', '/v1/jobs/next', {});
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('GET');
    expect((await call(server.url, a, 'GET', '/v1/jobs/x/result')).status).toBe(405);
    expect((await call(server.url, a, 'GET', '/v1/other')).status).toBe(404);
  });

  test('enqueueRaw sends any JSON as the job, adding only the id, attempt and leaseExpiresAt it lacks', async () => {
    const noKind = server.enqueueRaw({ input: 'not an object' });
    const odd = server.enqueueRaw({ id: 'j_fixed', kind: 42, attempt: 'seven' });
    const notObject = server.enqueueRaw([1, 2, 3]);
    const [first, second, third] = [await next(a), await next(a), await next(a)].map((r) => r.json as Record<string, unknown>);
    expect(first).toEqual({ id: noKind, attempt: 1, leaseExpiresAt: expect.any(String), input: 'not an object' });
    expect(second).toEqual({ id: 'j_fixed', kind: 42, attempt: 'seven', leaseExpiresAt: expect.any(String) });
    expect(third).toEqual([1, 2, 3]);
    expect(server.job(notObject)).toMatchObject({ state: 'leased', kind: undefined });
    for (const id of [noKind, odd, notObject]) await post(a, id, 'error', { error: { code: 'INVALID_INPUT', message: 'bad', retryable: false } });
  });

  test('enqueue refuses an id already in use', () => {
    server.enqueue('health', {}, { id: 'j_dup' });
    expect(() => server.enqueue('health', {}, { id: 'j_dup' })).toThrow(/already exists/);
  });
});
