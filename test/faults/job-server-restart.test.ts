// The job API crashing mid-run: the reference job server, as a process of its own, is SIGKILLed
// while the driver holds leases and answers are in flight, and started again on the same port.
// Its queue lives in memory only, so the new one is given (--jobs-file, same ids) every job the
// old one had not completed, as a persistent queue would hold them; new jobs follow. The driver
// never exits, reconnects by itself, finishes the carried-over jobs and the new ones, and every
// keyId still has one key across both servers' answers.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import type { JobView } from '../../scripts/job-server.js';
import { feed } from '../../scripts/soak/kill-loop.js';
import { Ledger, WRAPPED_ALGORITHMS, type JobSink } from '../../scripts/soak/ledger.js';
import { makePki, root } from '../scripts/helpers.js';
import { spawnDriver, stateIs, type LogLine } from '../support/driver.js';
import { lookInside, rowsAgainstReports, waitFor } from '../support/faults.js';

const dir = mkdtempSync(join(tmpdir(), 'fault-api-'));
const pki = makePki('driver');
const servers: ChildProcess[] = [];
afterAll(() => {
  for (const s of servers) s.kill('SIGKILL');
  pki.remove();
  rmSync(dir, { recursive: true, force: true });
});

interface ServerProcess {
  proc: ChildProcess;
  port: number;
  adminUrl: string;
  sink: JobSink;
}

/** `node scripts/job-server.ts` with its admin port; resolves once both ready lines are printed. */
async function startServer(extra: string[]): Promise<ServerProcess> {
  const args = [join(root, 'scripts/job-server.ts'), '--cert', pki.file('server.pem'), '--key', pki.file('server.key'), '--ca', pki.file('api-ca.pem'), '--admin-port', '0', '--lease-seconds', '3', ...extra];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.push(proc);
  let output = '';
  const [port, adminUrl] = await new Promise<[number, string]>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const listening = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      const admin = /admin on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (listening && admin) resolve([Number(listening[1]), admin[1]!]);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`job server exited ${code}:\n${output}`)));
  });
  const sink: JobSink = {
    async enqueue(kind, input, id) {
      const res = await fetch(`${adminUrl}/admin/jobs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind, input, id }) });
      if (res.status !== 201) throw new Error(`enqueue answered ${res.status}: ${await res.text()}`);
    },
    async views(ids) {
      const all = (await (await fetch(`${adminUrl}/admin/jobs`)).json()) as JobView[];
      const wanted = new Set(ids);
      return new Map(all.filter((j) => wanted.has(j.id)).map((j) => [j.id, j]));
    },
  };
  return { proc, port, adminUrl, sink };
}

test('SIGKILLed and restarted with the jobs it had not completed: the driver reconnects and finishes old and new', { timeout: 180_000 }, async () => {
  const first = await startServer([]);
  const sqlitePath = join(dir, 'keys.db');
  const d = spawnDriver({ pki, proxyAddr: `127.0.0.1:${first.port}`, sqlitePath, env: { LOG_LEVEL: 'info' } });
  const ledger = new Ledger(first.sink, { prefix: 'api.', algorithms: WRAPPED_ALGORITHMS, signsPerKey: 2, duplicateEvery: 4 });
  let keys = feed(ledger, { keysPerSecond: 10, keys: 40 });
  try {
    await d.waitForLog(stateIs('running'));
    await waitFor('30 jobs done on the first server', () => ledger.completedCount() >= 30, 60_000);
    await keys.stop(); // no enqueueing into a server that is about to die
    // A burst, so that the kill lands while the driver holds leases and has jobs queued behind them.
    for (let i = 0; i < 20; i++) await ledger.addKey();
    const leased = async () => [...(await first.sink.views(ledger.unfinished().map((j) => j.id))).values()].filter((j) => j.state === 'leased').length;
    let inFlight = 0;
    await waitFor('the driver to hold leases', async () => (inFlight = await leased()) > 0, 30_000);
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    const sawOutage = (l: LogLine) => l.msg === 'poll failed, backing off' || l.msg === 'answer failed, retrying';
    await d.waitForLog(sawOutage, 30_000);

    const carried = ledger.unfinished();
    const jobsFile = join(dir, 'carried.json');
    writeFileSync(jobsFile, JSON.stringify(carried));
    const second = await startServer(['--port', String(first.port), '--jobs-file', jobsFile]);
    ledger.newIncarnation(second.sink);
    keys = feed(ledger, { keysPerSecond: 10, keys: 40 });
    await keys.fed;
    await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 120_000);
    await keys.stop();
    await ledger.sync(true);

    const { problems, figures } = ledger.check();
    console.info(`job server killed: ${JSON.stringify({ inFlight, carried: carried.length, ...figures })}`);
    expect(problems).toEqual([]);
    expect(carried.length).toBeGreaterThan(inFlight);
    const done = await second.sink.views(carried.map((j) => j.id));
    expect([...done.values()].filter((j) => j.state === 'completed')).toHaveLength(carried.length);
    expect(d.proc.exitCode).toBeNull();
    expect((await d.stop()).code).toBe(0);

    const inside = lookInside(sqlitePath);
    expect(inside.integrity).toEqual(['ok']);
    expect(inside.rows).toHaveLength(figures.keys);
    expect(rowsAgainstReports(inside.rows, ledger.reports())).toEqual([]);
    second.proc.kill('SIGTERM');
  } finally {
    await keys.stop();
    await d.stop();
  }
});
