// The job server's admin endpoint (enqueue, read back, dump) and its command line as Node 24 runs
// it: --help, bad usage, the ready line, a jobs file, and the dump written on SIGTERM.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer } from '../../scripts/job-server.js';
import type { JobServer, JobView } from '../../scripts/job-server.js';
import { call, makePki, root } from './helpers.js';
import type { Identity } from './helpers.js';

const pki = makePki('driver');
const driver = (): Identity => ({ cert: pki.read('driver-chain.pem'), key: pki.read('driver.key'), ca: pki.read('api-ca.pem') });
afterAll(() => pki.remove());

/** Plain HTTP to the admin port; returns the status and parsed JSON body. */
function admin(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, url), { method, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body));
  });
}

describe('admin endpoint', () => {
  let server: JobServer;
  beforeAll(async () => {
    server = await startJobServer({ cert: pki.read('server.pem'), key: pki.read('server.key'), ca: pki.read('api-ca.pem'), adminPort: 0 });
  });
  afterAll(() => server.close());

  test('is plain HTTP on 127.0.0.1 and off unless asked for', async () => {
    expect(server.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const without = await startJobServer({ cert: pki.read('server.pem'), key: pki.read('server.key'), ca: pki.read('api-ca.pem') });
    expect(without.adminUrl).toBeUndefined();
    await without.close();
  });

  test('enqueues one job or an array, and reads jobs back with their answers', async () => {
    const one = await admin(server.adminUrl!, 'POST', '/admin/jobs', { kind: 'health', input: {}, id: 'j_admin1' });
    expect(one).toEqual({ status: 201, json: { ids: ['j_admin1'] } });
    const many = await admin(server.adminUrl!, 'POST', '/admin/jobs', [{ kind: 'sign', input: { keyId: 'k' } }, { raw: { kind: 9 } }]);
    expect(many.status).toBe(201);
    const ids = [...(one.json as { ids: string[] }).ids, ...(many.json as { ids: string[] }).ids];
    expect(ids).toHaveLength(3);

    const leased = await call(server.url, driver(), 'GET', '/v1/jobs/next?wait=0');
    expect(leased.json).toMatchObject({ id: 'j_admin1', kind: 'health', attempt: 1 });
    expect((await call(server.url, driver(), 'POST', '/v1/jobs/j_admin1/result', { output: { ok: true } })).status).toBe(204);

    const got = await admin(server.adminUrl!, 'GET', '/admin/jobs/j_admin1');
    expect(got.status).toBe(200);
    expect(got.json).toMatchObject({ id: 'j_admin1', state: 'completed', result: { ok: true }, answers: [{ by: 'driver', status: 204, type: 'result' }] });
    const all = await admin(server.adminUrl!, 'GET', '/admin/jobs');
    expect((all.json as JobView[]).map((j) => [j.id, j.state, j.kind])).toEqual([[ids[0], 'completed', 'health'], [ids[1], 'queued', 'sign'], [ids[2], 'queued', 9]]);
    expect((await admin(server.adminUrl!, 'GET', '/admin/stats')).json).toMatchObject({ jobs: { queued: 2, leased: 0, completed: 1 }, accepted: 1 });
  });

  test.each([
    ['not JSON', '{', 400],
    ['no kind', { input: {} }, 400],
    ['a numeric id', { kind: 'health', id: 5 }, 400],
    ['an id in use', { kind: 'health', id: 'j_admin1' }, 409],
    ['an id twice in one array', [{ kind: 'health', id: 'j_twice' }, { kind: 'health', id: 'j_twice' }], 409],
  ])('refuses %s and enqueues nothing', async (_name, body, status) => {
    const before = server.jobs().length;
    expect((await admin(server.adminUrl!, 'POST', '/admin/jobs', body)).status).toBe(status);
    expect(server.jobs()).toHaveLength(before);
  });

  test('404 for an unknown job or path; fail-next-polls injects failures', async () => {
    expect((await admin(server.adminUrl!, 'GET', '/admin/jobs/j_none')).status).toBe(404);
    expect((await admin(server.adminUrl!, 'GET', '/v1/jobs/next')).status).toBe(404);
    expect((await admin(server.adminUrl!, 'POST', '/admin/fail-next-polls', { count: 1, status: 502 })).status).toBe(200);
    expect((await call(server.url, driver(), 'GET', '/v1/jobs/next?wait=0')).status).toBe(502);
  });
});

describe('command line', () => {
  const script = join(root, 'scripts/job-server.ts');
  const tlsArgs = ['--cert', pki.file('server.pem'), '--key', pki.file('server.key'), '--ca', pki.file('api-ca.pem')];

  test('runs on Node 24 directly: --help prints the usage and exits 0', () => {
    const run = spawnSync(process.execPath, [script, '--help'], { encoding: 'utf8' });
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(24);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^usage: node scripts\/job-server\.ts --cert FILE --key FILE --ca FILE/);
    expect(run.stderr).toBe('');
  });

  test.each([
    [['--cert', 'x'], /missing --key, --ca/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--port', 'http'], /bad --port: http/],
  ])('bad usage %j exits 2 with one line', (args, message) => {
    const run = spawnSync(process.execPath, [script, ...(args[0] === '--port' ? [...tlsArgs, ...args] : args)], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });

  test('prints its ready line, serves the jobs file, and writes the dump on SIGTERM', async () => {
    const jobsFile = pki.file('jobs.json');
    const dumpFile = pki.file('dump.json');
    writeFileSync(jobsFile, JSON.stringify([{ kind: 'health', input: {}, id: 'j_cli' }, { kind: 'sign', input: { keyId: 'k' } }]));
    const child = spawn(process.execPath, [script, ...tlsArgs, '--port', '0', '--lease-seconds', '5', '--jobs-file', jobsFile, '--dump-file', dumpFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      const ready = (await lines.next()).value as string;
      expect(ready).toMatch(/^listening on https:\/\/127\.0\.0\.1:\d+$/);
      const url = ready.slice('listening on '.length);

      const job = await call(url, driver(), 'GET', '/v1/jobs/next?wait=0');
      expect(job.json).toMatchObject({ id: 'j_cli', kind: 'health', attempt: 1 });
      const leaseMs = Date.parse((job.json as { leaseExpiresAt: string }).leaseExpiresAt) - Date.now();
      expect(leaseMs).toBeLessThanOrEqual(5000);
      expect((await call(url, driver(), 'POST', '/v1/jobs/j_cli/result', { output: { ok: true } })).status).toBe(204);
      expect(existsSync(dumpFile)).toBe(false);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      const dump = JSON.parse(readFileSync(dumpFile, 'utf8')) as { jobs: JobView[]; stats: { accepted: number } };
      expect(dump.jobs.map((j) => [j.kind, j.state])).toEqual([['health', 'completed'], ['sign', 'queued']]);
      expect(dump.jobs[0]!.answers).toEqual([expect.objectContaining({ by: 'driver', type: 'result', status: 204, body: { output: { ok: true } } })]);
      expect(dump.stats.accepted).toBe(1);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
