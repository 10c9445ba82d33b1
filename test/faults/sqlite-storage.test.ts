// The SQLite key file's file system failing under a running driver (root only: real mounts):
// a tmpfs that fills up, and an ext4 image (errors=remount-ro) turned read-only at run time the
// way the kernel does after an I/O error. Jobs that need to write get a clean, retryable
// DATABASE_UNAVAILABLE; afterwards the file passes integrity_check, every row present holds the
// key that was reported for it, and once space returns (or the file system is repaired and the
// driver restarted) the retried jobs succeed.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { startJobServer, type JobServer } from '../../scripts/job-server.js';
import { feed } from '../../scripts/soak/kill-loop.js';
import { Ledger, serverSink, WRAPPED_ALGORITHMS } from '../../scripts/soak/ledger.js';
import { makePki, serverTls, type Pki } from '../scripts/helpers.js';
import { spawnDriver, stateIs, type DriverProcess } from '../support/driver.js';
import { canMount, lookInside, mount, rowsAgainstReports, unmount, unseenLeases, waitFor } from '../support/faults.js';

const dir = mkdtempSync(join(tmpdir(), 'fault-sqlite-'));
const mountable = canMount(dir);
if (!mountable) console.warn('sqlite-storage: skipped, this process cannot mount file systems (needs root and a sandbox that allows mount)');
let pki: Pki;
let server: JobServer;
let driver: DriverProcess | undefined;
const mounted: string[] = [];

beforeAll(async () => {
  pki = makePki('driver');
});
// A job server per test: a job a failed test left queued must not reach the next test's driver.
beforeEach(async () => {
  server = await startJobServer({ ...serverTls(pki), leaseSeconds: 5 });
});
afterEach(async () => {
  await driver?.stop();
  driver = undefined;
  for (const m of mounted.splice(0)) unmount(m);
  await server?.close();
});
afterAll(async () => {
  pki?.remove();
  rmSync(dir, { recursive: true, force: true });
});

function start(sqlitePath: string): DriverProcess {
  driver = spawnDriver({ pki, proxyAddr: server.proxyAddr, sqlitePath, env: { LOG_LEVEL: 'info' } });
  return driver;
}

const unavailable = (ledger: Ledger) => ledger.check().figures.retriedByCode.DATABASE_UNAVAILABLE ?? 0;

describe.skipIf(!mountable)('SQLite on a failing file system', () => {
  test('a full disk: DATABASE_UNAVAILABLE, no partial row, and recovery once space returns', { timeout: 180_000 }, async () => {
    const mnt = join(dir, 'full');
    mkdirSync(mnt);
    // Room for the whole run once the filler is gone: the WAL grows to SQLite's checkpoint size (4 MiB).
    mount(['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt]);
    mounted.push(mnt);
    const sqlitePath = join(mnt, 'keys.db');
    const d = start(sqlitePath);
    await d.waitForLog(stateIs('running'));
    const ledger = new Ledger(serverSink(server), { prefix: 'full.', algorithms: WRAPPED_ALGORITHMS, signsPerKey: 2, duplicateEvery: 4, retryCodes: ['DATABASE_UNAVAILABLE'] });
    const keys = feed(ledger, { keysPerSecond: 8, keys: 40 });
    try {
      await waitFor('20 jobs done before the disk fills', () => ledger.completedCount() >= 20, 60_000);
      ledger.holdRetries();
      const filler = openSync(join(mnt, 'filler'), 'w');
      try {
        for (;;) writeSync(filler, Buffer.alloc(64 * 1024));
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        closeSync(filler);
      }
      for (let i = 0; i < 5; i++) await ledger.addKey(); // whatever the feed has left, these meet the full disk
      await waitFor('jobs to meet the full disk', () => unavailable(ledger) >= 5, 60_000);
      expect(d.proc.exitCode).toBeNull();
      rmSync(join(mnt, 'filler'));
      await ledger.releaseRetries();

      await keys.fed;
      await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 120_000);
      await keys.stop();
      await ledger.sync(true);
      const { problems, figures } = ledger.check();
      console.info(`sqlite full disk: ${JSON.stringify(figures)}`);
      expect(problems).toEqual([]);
      expect(d.logs.some((l) => l.msg === 'part is down' && l.part === 'database')).toBe(true);
      // The gate closed and opened again with every failed job: no job may be lost on the way.
      expect(unseenLeases(server.jobs(), [d])).toEqual([]);
      expect((await d.stop()).code).toBe(0);

      const inside = lookInside(sqlitePath);
      expect(inside.integrity).toEqual(['ok']);
      expect(inside.rows).toHaveLength(figures.keys);
      expect(rowsAgainstReports(inside.rows, ledger.reports())).toEqual([]);
    } finally {
      await keys.stop();
    }
  });

  test('read-only at run time (ext4 errors=remount-ro after an error): DATABASE_UNAVAILABLE, a whole file after fsck, retries succeed', { timeout: 180_000 }, async () => {
    const image = join(dir, 'ext4.img');
    const mnt = join(dir, 'ro');
    mkdirSync(mnt);
    writeFileSync(image, '');
    execFileSync('truncate', ['-s', '32M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', image]);
    mount(['-o', 'loop,errors=remount-ro', image, mnt]);
    mounted.push(mnt);
    const sqlitePath = join(mnt, 'keys.db');
    const d = start(sqlitePath);
    await d.waitForLog(stateIs('running'));
    const ledger = new Ledger(serverSink(server), { prefix: 'ro.', algorithms: WRAPPED_ALGORITHMS, signsPerKey: 2, duplicateEvery: 4, retryCodes: ['DATABASE_UNAVAILABLE'] });
    for (let i = 0; i < 15; i++) await ledger.addKey();
    await waitFor('the first keys and signs', async () => (await ledger.sync(), ledger.settled), 60_000);
    const before = ledger.reports();

    // What the kernel does to an ext4 file system mounted errors=remount-ro when it meets an error.
    const device = basename(execFileSync('findmnt', ['-no', 'SOURCE', mnt], { encoding: 'utf8' }).trim());
    ledger.holdRetries();
    writeFileSync(`/sys/fs/ext4/${device}/trigger_fs_error`, 'fault suite');
    expect(execFileSync('findmnt', ['-no', 'OPTIONS', mnt], { encoding: 'utf8' })).toMatch(/emergency_ro|(^|,)ro(,|$)/);
    for (let i = 0; i < 10; i++) await ledger.addKey();
    await waitFor('the keygens to meet the read-only file system', async () => (await ledger.sync(), unavailable(ledger) >= 10), 60_000);
    expect(d.proc.exitCode).toBeNull();

    // Repair as an operator would: stop the driver, unmount, fsck, mount, start it again.
    const stopped = await d.stop();
    driver = undefined;
    unmount(mnt);
    mounted.splice(mounted.indexOf(mnt), 1);
    try {
      execFileSync('e2fsck', ['-fy', image], { stdio: 'pipe' });
    } catch (err) {
      if ((err as { status?: number }).status !== 1) throw err; // 1: errors corrected
    }
    mount(['-o', 'loop,errors=remount-ro', image, mnt]);
    mounted.push(mnt);
    const repaired = lookInside(sqlitePath);
    expect(repaired.integrity).toEqual(['ok']);
    expect(rowsAgainstReports(repaired.rows, before)).toEqual([]);

    start(sqlitePath);
    await ledger.releaseRetries();
    await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 120_000);
    await ledger.sync(true);
    const { problems, figures } = ledger.check();
    console.info(`sqlite read-only: ${JSON.stringify({ stoppedWhileReadOnly: stopped.code, ...figures })}`);
    expect(problems).toEqual([]);
    expect(stopped.code).toBe(0);
    expect((await driver!.stop()).code).toBe(0);
    driver = undefined;
    const inside = lookInside(sqlitePath);
    expect(inside.integrity).toEqual(['ok']);
    expect(inside.rows).toHaveLength(figures.keys);
    expect(rowsAgainstReports(inside.rows, ledger.reports())).toEqual([]);
  });
});
