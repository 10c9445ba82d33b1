// The job API client (runtime/driver/job-api.ts) and `hsm-driver run` against a job API that
// misbehaves on purpose, over real mutual TLS: bodies cut short, huge or endless, wrong content
// types, stalls, connections torn mid-body, redirects, odd statuses and lease fields. What must
// hold: only a job, "no job" or a clean poll error comes out of a poll, the client reads a
// bounded number of bytes, no answer is posted once the lease is over, and the driver lives on.
import { gzipSync } from 'node:zlib';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { ApiError, JobApi, type Delivery, type LeasedJob } from '../../../runtime/driver/job-api.js';
import { loadClientTls } from '../../../runtime/driver/tls.js';
import { makePki, until, type Pki } from '../../scripts/helpers.js';
import { TARGETS, spawnDriver, stateIs, type DriverProcess, type LogLine } from '../../support/driver.js';
import { silentLog } from '../../support/hsm.js';
import { jobBody, startHostileServer, stream, type Behaviour, type HostileServer } from '../../support/hostile-server.js';

const MiB = 1 << 20;
let pki: Pki;
let server: HostileServer;
let api: JobApi;

beforeAll(async () => {
  pki = makePki('driver');
  server = await startHostileServer(pki);
  api = new JobApi(server.proxyAddr, loadClientTls({ clientCert: pki.file('driver-chain.pem'), clientKey: pki.file('driver.key'), caCert: pki.file('api-ca.pem') }), 'test', silentLog);
});
afterAll(async () => {
  await api?.close();
  await server?.close();
  pki?.remove();
});
beforeEach(() => {
  server.seen.length = 0;
});

/** One poll's outcome; a regression that hangs is cut off after 20 s and fails the test as a non-ApiError. */
async function poll(signal = AbortSignal.timeout(20_000)): Promise<LeasedJob | null | ApiError> {
  try {
    return await api.next(0, signal);
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
}

async function pollError(): Promise<ApiError> {
  const outcome = await poll();
  expect(outcome).toBeInstanceOf(ApiError);
  return outcome as ApiError;
}

/** A leased job as parseJob makes it, for answer(). */
const leased = (leaseMs: number, id = 'j_hostile'): LeasedJob => ({ id, kind: 'health', attempt: 1, leaseExpiresAt: new Date(Date.now() + leaseMs), input: {} });

const reply =
  (status: number, body = '', headers: Record<string, string> = {}): Behaviour =>
  (_req, res) =>
    res.writeHead(status, headers).end(body);
const postsTo = (id: string) => server.seen.filter((r) => r.method === 'POST' && r.path.startsWith(`/v1/jobs/${id}/`));

describe('the job API client against a hostile server', () => {
  test.each([
    ['JSON cut short', 'application/json', Buffer.from('{"id":"j_1","kind":"health","input":{')],
    ['an empty body', 'application/json', Buffer.from('')],
    ['an HTML error page', 'text/html', Buffer.from('<html><body>502 Bad Gateway</body></html>')],
    ['null', 'application/json', Buffer.from('null')],
    ['an array', 'application/json', Buffer.from('[{"id":"j_1","kind":"health"}]')],
    ['a bare string', 'application/json', Buffer.from('"j_1"')],
    ['no id', 'application/json', Buffer.from(jobBody({ id: undefined }))],
    ['an id that would leave the path', 'application/json', Buffer.from(jobBody({ id: '../../admin' }))],
    ['an id of 300 characters', 'application/json', Buffer.from(jobBody({ id: 'j'.repeat(300) }))],
    ['a number as id', 'application/json', Buffer.from(jobBody({ id: 7 }))],
  ])('200 with %s is a poll error (bad-job), never a job', async (_what, type, body) => {
    server.behave(reply(200, body.toString(), { 'content-type': type }));
    expect((await pollError()).code).toBe('bad-job');
  });

  test('a gzip body the client did not ask for is not inflated: a bad job, not a bomb', async () => {
    server.behave((_req, res) => res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(jobBody())));
    expect((await pollError()).code).toBe('bad-job');
  });

  test('the content type does not decide: a valid job under another type is still the job', async () => {
    for (const type of ['text/plain', 'application/octet-stream', 'text/html; charset=latin1']) {
      server.behave(reply(200, jobBody({ id: 'j_typed' }), { 'content-type': type }));
      expect(await poll()).toMatchObject({ id: 'j_typed', kind: 'health', input: {} });
    }
  });

  describe('bodies are read only up to a cap', () => {
    test('a declared 10 MiB job body is refused unread', async () => {
      let written: Promise<number> | undefined;
      server.behave((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(10 * MiB) });
        written = stream(res, 10 * MiB);
      });
      const err = await pollError();
      expect(err.code).toBe('too-large');
      expect(await written).toBeLessThan(8 * MiB);
    });

    test('an endless job body is cut off at the cap', async () => {
      let written: Promise<number> | undefined;
      server.behave((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' }); // chunked: no length to refuse up front
        written = stream(res, 64 * MiB);
      });
      expect((await pollError()).code).toBe('too-large');
      expect(await written).toBeLessThan(8 * MiB);
    });

    test('a 500 with an endless body: the status, a short message, and the body left unread', async () => {
      let written: Promise<number> | undefined;
      server.behave((_req, res) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        written = stream(res, 64 * MiB, 0x78);
      });
      const err = await pollError();
      expect(err.status).toBe(500);
      expect(err.message).toMatch(/^poll answered 500: x+$/);
      expect(err.message.length).toBeLessThan(300);
      expect(await written).toBeLessThan(8 * MiB);
    });

    test('the largest job the protocol allows still fits under the cap', async () => {
      const input = { keyId: 'k', data: 'ab'.repeat(65536), encoding: 'message', hash: 'sha256' };
      server.behave(reply(200, jobBody({ id: 'j_big', kind: 'sign', input }), { 'content-type': 'application/json' }));
      expect(await poll()).toMatchObject({ id: 'j_big', kind: 'sign', input });
    });

    test('headers over the client’s limit are a poll error', async () => {
      server.behave(reply(200, jobBody(), { 'x-padding': 'a'.repeat(MiB) }));
      const err = await pollError();
      expect(err.status).toBeUndefined();
      expect(err.code).toMatch(/HEADERS_OVERFLOW|HPE_HEADER_OVERFLOW/);
    });
  });

  describe('stalls: a poll the driver gives up on ends at once', () => {
    test.each([
      ['headers and half a body, then nothing', true],
      ['nothing at all', false],
    ])('%s', async (_what, sendHeaders) => {
      let stalled = false;
      server.behave((_req, res) => {
        if (!sendHeaders) return void (stalled = true);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '200' });
        res.write('{"id":"j_stall","kind":', () => (stalled = true));
      });
      const stop = new AbortController();
      const outcome = api.next(30, stop.signal);
      await until(() => stalled, 10_000);
      const reason = new Error('driver stopping');
      stop.abort(reason);
      await expect(outcome).rejects.toBe(reason);
    });
  });

  describe('connections torn down mid-body', () => {
    const half = (res: Parameters<Behaviour>[1], then: () => void) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' });
      res.write(jobBody().slice(0, 40), then);
    };
    test.each<[string, Behaviour]>([
      ['TLS socket destroyed (no close_notify)', (req, res) => half(res, () => req.socket.destroy())],
      ['TCP reset', (_req, res, _seen, raw) => half(res, () => raw.resetAndDestroy())],
      ['garbage inside the TLS stream', (_req, res, _seen, raw) => half(res, () => raw.write(Buffer.alloc(512, 0x17)))],
      ['a chunked body that stops', (req, res) => (res.writeHead(200), res.write('{"id":"j_1",', () => req.socket.destroy()))],
    ])('%s: a poll error with the network cause, and the next poll works', async (_what, behaviour) => {
      server.behave(behaviour);
      const err = await pollError();
      expect(err.status).toBeUndefined();
      expect(err.code).toEqual(expect.any(String));
      expect(err.code).not.toBe('bad-job');
      server.behave(reply(200, jobBody({ id: 'j_after' })));
      expect(await poll()).toMatchObject({ id: 'j_after' });
    });
  });

  describe('redirects are never followed', () => {
    const elsewhere = () => server.seen.filter((r) => r.path.startsWith('/v1/elsewhere'));
    const redirect =
      (status: number): Behaviour =>
      (req, res) => {
        if (req.url!.startsWith('/v1/elsewhere')) return void res.writeHead(200, { 'content-type': 'application/json' }).end(jobBody({ id: 'j_elsewhere' }));
        res.writeHead(status, { location: `https://${server.proxyAddr}/v1/elsewhere`, 'content-type': 'application/json' }).end(jobBody({ id: 'j_in_redirect' }));
      };

    test.each([301, 302, 303, 307, 308])('%i on a poll is a poll error with that status', async (status) => {
      server.behave(redirect(status));
      expect((await pollError()).status).toBe(status);
      expect(elsewhere()).toEqual([]);
    });

    test.each([302, 307, 308])('%i on an answer: retried in place until the lease ends', async (status) => {
      server.behave(redirect(status));
      expect(await api.answer(leased(1200), { output: { ok: true } })).toBe('lease-expired');
      expect(postsTo('j_hostile').length).toBeGreaterThan(0);
      expect(elsewhere()).toEqual([]);
    });
  });

  test('any status but 200 and 204 is a poll error carrying that status', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 201, max: 599 }).filter((s) => s !== 204), fc.string({ maxLength: 300 }), async (status, body) => {
        server.behave(reply(status, body, { 'content-type': 'text/plain; charset=utf-8' }));
        const err = await pollError();
        expect(err.status).toBe(status);
        expect(err.message.length).toBeLessThan(300);
      }),
      { numRuns: 25 },
    );
  });

  describe('answers and the lease', () => {
    test('an answer whose lease is already over, or about to be, is not posted at all', async () => {
      server.behave(reply(204));
      for (const leaseMs of [-60_000, -1, 0, 100]) {
        expect(await api.answer(leased(leaseMs), { output: { ok: true } })).toBe('lease-expired');
      }
      expect(postsTo('j_hostile')).toEqual([]);
    });

    test.each<[string, Behaviour]>([
      ['500', reply(500, 'try later')],
      ['503 with Retry-After', reply(503, '', { 'retry-after': '3600' })],
      ['the connection dropped', (req) => req.socket.destroy()],
      ['a TCP reset', (_req, _res, _seen, raw) => raw.resetAndDestroy()],
      ['no answer at all', () => undefined],
      ['headers, then the body stalls', (_req, res) => res.writeHead(500, { 'content-length': '100' }).write('busy')],
    ])('a server answering %s: retried only while the lease lasts', async (_what, behaviour) => {
      server.behave(behaviour);
      const job = leased(1500);
      expect(await api.answer(job, { error: { code: 'INVALID_INPUT', message: 'bad', retryable: false } })).toBe('lease-expired');
      const posts = postsTo('j_hostile');
      expect(posts.length).toBeGreaterThan(0);
      for (const p of posts) expect(p.at).toBeLessThanOrEqual(job.leaseExpiresAt.getTime());
    });

    test('409 and 404 end the answer at once', async () => {
      server.behave(reply(409));
      expect(await api.answer(leased(30_000), { output: {} })).toBe('lease-lost');
      server.behave(reply(404, 'x'.repeat(MiB)));
      expect(await api.answer(leased(30_000), { output: {} })).toBe('unknown-job');
      expect(postsTo('j_hostile')).toHaveLength(2);
    });
  });

  test('any job envelope: a job with a lease an answer can keep, or bad-job; never a late answer', async () => {
    const jobId = fc.stringMatching(/^[A-Za-z0-9._:~-]{1,40}$/);
    const lease = fc.oneof(
      fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toISOString()),
      fc.integer({ min: -3_600_000, max: 3_600_000 }).map((ms) => ({ offsetMs: ms })),
      fc.constantFrom('+275760-09-13T00:00:00.000Z', '-271821-04-20T00:00:00.000Z', '9999-12-31T23:59:59Z', '2026-02-30T00:00:00Z', 'tomorrow', '', 'Infinity'),
      fc.jsonValue({ maxDepth: 1 }),
    );
    const envelope = fc.oneof(
      { weight: 6, arbitrary: fc.record({ id: fc.oneof({ weight: 5, arbitrary: jobId }, fc.jsonValue({ maxDepth: 1 })), kind: fc.jsonValue({ maxDepth: 1 }), attempt: fc.jsonValue({ maxDepth: 1 }), leaseExpiresAt: lease, input: fc.jsonValue({ maxDepth: 2 }) }, { requiredKeys: [] }) },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    );
    await fc.assert(
      fc.asyncProperty(envelope, async (value) => {
        server.seen.length = 0;
        // Offsets become dates now, so "an hour ago" is an hour ago when the poll happens.
        const body = JSON.stringify(value, (k, v: unknown) => (k === 'leaseExpiresAt' && typeof v === 'object' && v !== null && 'offsetMs' in v ? new Date(Date.now() + (v as { offsetMs: number }).offsetMs).toISOString() : v));
        server.behave(reply(200, body, { 'content-type': 'application/json' }));
        const outcome = await poll();
        if (outcome instanceof ApiError) return void expect(outcome.code).toBe('bad-job');
        expect(outcome).not.toBeNull();
        const job = outcome!;
        expect(Number.isNaN(job.leaseExpiresAt.getTime())).toBe(false);
        server.behave(reply(204));
        const sent = (JSON.parse(body) as { leaseExpiresAt?: unknown }).leaseExpiresAt;
        const stated = typeof sent === 'string' ? Date.parse(sent) : NaN;
        const before = Date.now();
        const delivery = await Promise.race([api.answer(job, { output: { ok: true } }), new Promise<string>((r) => setTimeout(() => r('still retrying after 10 s'), 10_000).unref())]);
        expect(['accepted', 'lease-expired'] satisfies Delivery[]).toContain(delivery);
        const posts = postsTo(job.id);
        if (delivery === 'lease-expired') expect(posts).toEqual([]);
        // A lease well ahead (or none readable: the client assumes 30 s) is answered; a passed one never is.
        if (Number.isNaN(stated) || stated > before + 5000) expect(delivery).toBe('accepted');
        if (stated <= before) expect(posts).toEqual([]);
        for (const p of posts) expect(p.at).toBeLessThanOrEqual(Math.min(job.leaseExpiresAt.getTime(), Number.isNaN(stated) ? Infinity : stated));
      }),
      { numRuns: 40 },
    );
  });
});

describe.each(TARGETS)('hsm-driver run as the %s against a hostile job API', (target) => {
  const dbDir = mkdtempSync(join(tmpdir(), 'hostile-'));
  let driver: DriverProcess | undefined;
  let n = 0;
  afterEach(async () => {
    await driver?.stop('SIGKILL');
    driver = undefined;
  });
  const start = () => (driver = spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath: join(dbDir, `keys-${++n}.db`) }));
  const pollFailed = (l: LogLine) => l.msg === 'poll failed, backing off';
  const answerOf = (id: string) => JSON.parse(postsTo(id)[0]!.body) as { output?: Record<string, unknown>; error?: Record<string, unknown> };

  test('a run of broken polls and bad jobs: the driver backs off, answers what it can, never posts late, and lives on', async () => {
    const far = '+275760-09-13T00:00:00.000Z';
    const ok = (body: string): Behaviour => reply(200, body, { 'content-type': 'application/json' });
    const script: Behaviour[] = [
      ok('{"id":"j_cut","kind":"health","input":{'),
      (_req, res) => (res.writeHead(200, { 'content-length': String(10 * MiB) }), void stream(res, 10 * MiB)),
      (_req, res) => (res.writeHead(200), void stream(res, 64 * MiB)),
      reply(200, '<html>gateway</html>', { 'content-type': 'text/html' }),
      reply(302, jobBody({ id: 'j_redirected' }), { location: `https://${server.proxyAddr}/v1/elsewhere` }),
      (req, res) => (res.writeHead(200, { 'content-length': '300' }), res.write('{"id":"j_torn",', () => req.socket.destroy())),
      (_req, res, _seen, raw) => (res.writeHead(200, { 'content-length': '300' }), res.write('{"id":"j_reset",', () => raw.resetAndDestroy())),
      reply(200, jobBody({ id: 'j_headers' }), { 'x-padding': 'a'.repeat(MiB) }),
      (_req, res) => (res.writeHead(500), void stream(res, 64 * MiB, 0x78)),
      ok(jobBody({ id: '../escape' })),
      ok(jobBody({ id: 'j_far', leaseExpiresAt: far })),
      ok(jobBody({ id: 'j_past', leaseExpiresAt: '2000-01-01T00:00:00.000Z' })),
      ok(jobBody({ id: 'j_bad_input', kind: 'sign', input: { keyId: 'ключ', data: '0xZZ', encoding: 'digest' } })),
      ok(jobBody({ id: 'j_proto', kind: '__proto__', input: { deep: 0 } }).replace('"deep":0', `"deep":${'['.repeat(100_000)}${']'.repeat(100_000)}`)),
      ok(jobBody({ id: 'j_kind', kind: 0 }).replace('"kind":0', `"kind":${'['.repeat(100_000)}${']'.repeat(100_000)}`)),
    ];
    const broken = 10;
    let polls = 0;
    server.behave((req, res, seen, raw) => {
      if (req.method === 'POST') return void res.writeHead(204).end();
      if (req.url!.startsWith('/v1/elsewhere')) return void res.writeHead(200).end(jobBody({ id: 'j_elsewhere' }));
      const behaviour = script[polls++];
      if (behaviour) return behaviour(req, res, seen, raw);
      setTimeout(() => res.writeHead(204).end(), 500).unref(); // then an empty queue
    });
    const d = start();
    for (const id of ['j_far', 'j_bad_input', 'j_proto', 'j_kind']) await d.waitForLog((l) => l.jobId === id && l.msg === 'job done', 40_000);
    const past = await d.waitForLog((l) => l.jobId === 'j_past' && l.msg === 'job answer not delivered', 40_000);
    expect(past.delivery).toBe('lease-expired');
    expect(postsTo('j_past')).toEqual([]);

    expect(answerOf('j_far').output).toMatchObject({ ok: true, hsm: { ok: true }, database: { ok: true } });
    expect(answerOf('j_bad_input').error).toMatchObject({ code: 'INVALID_INPUT', retryable: false });
    expect(answerOf('j_proto').error).toMatchObject({ code: 'UNSUPPORTED_KIND', retryable: false });
    expect(answerOf('j_kind').error).toMatchObject({ code: 'UNSUPPORTED_KIND', retryable: false });
    const failures = d.logs.filter(pollFailed);
    expect(failures.length).toBeGreaterThanOrEqual(broken);
    expect(failures.filter((l) => /over 1048576 bytes/.test(String(l.err)))).toHaveLength(2);
    expect(server.seen.filter((r) => r.path.startsWith('/v1/elsewhere') || /j_redirected|j_torn|j_reset|j_headers|j_cut|escape/.test(r.path))).toEqual([]);
    expect(d.logs.filter((l) => l.code === 'INTERNAL' || l.msg === 'job runner failed' || l.level === 'fatal')).toEqual([]);
    expect(d.proc.exitCode).toBeNull();
    expect((await d.stop('SIGTERM')).code).toBe(0);
  });

  test('SIGTERM while polls hang mid-body: the driver stops them, drains and exits 0', async () => {
    let stalled = 0;
    server.behave((req, res) => {
      if (req.method === 'POST') return void res.writeHead(204).end();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500' });
      res.write('{"id":"j_hang","kind":"health",', () => stalled++);
    });
    const d = start();
    await d.waitForLog(stateIs('running'));
    await until(() => stalled > 0, 20_000);
    const { code } = await d.stop('SIGTERM');
    expect(code).toBe(0);
    expect(d.logs.filter((l) => l.msg === 'driver state').map((l) => l.state)).toEqual(['starting', 'running', 'draining', 'stopped']);
    expect(postsTo('j_hang')).toEqual([]);
  });
});
