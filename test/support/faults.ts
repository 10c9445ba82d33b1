// Shared by test/faults: a SoftHSM token of the test's own (faults may wreck it, never the shared
// one), a seeded random source, the driver as the kill loop sees it, /readyz, a look inside a
// SQLite key file, and small file systems to fill up or turn read-only (root only).
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { JobView } from '../../scripts/job-server.js';
import type { Killable } from '../../scripts/soak/kill-loop.js';
import type { KeyReport } from '../../scripts/soak/ledger.js';
import { stateIs, type DriverProcess, type LogLine } from './driver.js';
import { readEnvFile } from './global-setup.js';

const root = join(import.meta.dirname, '..', '..');

export { ownToken } from './token.js';

/** A small seeded generator (mulberry32): FAULT_SEED replays a run; the seed is printed. */
export function seededRandom(name: string): () => number {
  let seed = Number(process.env.FAULT_SEED ?? randomInt(2 ** 31));
  console.info(`${name}: FAULT_SEED=${seed}`);
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A driver of test/support/driver.ts as the kill loop takes it: running means logged in and polling. */
export function killable(d: DriverProcess): Killable {
  return {
    running: Promise.race([
      d.waitForLog(stateIs('running'), 90_000).then(() => undefined),
      d.exited.then((code) => Promise.reject(new Error(`driver exited (code ${code}) before it was running:\n${d.stderr().slice(-3000)}`))),
    ]),
    exited: d.exited,
    kill: (signal) => void d.proc.kill(signal),
    tail: () => d.stderr().slice(-3000),
  };
}

/** Polls `check` every 100 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The /readyz status and body of a driver started with --metrics-addr 127.0.0.1:0. */
export async function readyz(d: DriverProcess): Promise<{ status: number; text: string }> {
  const served = await d.waitForLog((l: LogLine) => l.msg === 'serving /metrics, /livez and /readyz');
  const res = await fetch(`http://${served.address as string}/readyz`);
  return { status: res.status, text: await res.text() };
}

/** The driver's states in order, from its log. */
export const states = (d: DriverProcess): string[] => d.logs.filter((l) => l.msg === 'driver state').map((l) => String(l.state));

export interface SqliteLook {
  integrity: string[];
  rows: Array<{ keyId: string; algorithm: string; publicKeyDer: string; hasWrapped: boolean; hasResident: boolean }>;
}

/** Opens a key file the driver left (read-only) and reads integrity_check and every row. */
export function lookInside(path: string): SqliteLook {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const integrity = db.prepare('PRAGMA integrity_check').all().map((r) => String(r.integrity_check));
    const rows = db.prepare('SELECT key_id, algorithm, public_key_der, wrapped_key, resident_id FROM keys ORDER BY key_id').all().map((r) => ({
      keyId: String(r.key_id),
      algorithm: String(r.algorithm),
      publicKeyDer: Buffer.from(r.public_key_der as Uint8Array).toString('base64'),
      hasWrapped: r.wrapped_key instanceof Uint8Array && r.wrapped_key.length > 0,
      hasResident: r.resident_id instanceof Uint8Array && r.resident_id.length > 0,
    }));
    return { integrity, rows };
  } finally {
    db.close();
  }
}

/** Rows that do not match what the driver reported: another key, or no key material. */
export function rowsAgainstReports(rows: SqliteLook['rows'], reports: Map<string, KeyReport>): string[] {
  const problems: string[] = [];
  for (const row of rows) {
    const report = reports.get(row.keyId);
    if (!row.hasWrapped && !row.hasResident) problems.push(`row ${row.keyId} holds no key`);
    if (report && (report.publicKeyDer !== row.publicKeyDer || report.algorithm !== row.algorithm)) problems.push(`row ${row.keyId} differs from the key reported`);
  }
  for (const keyId of reports.keys()) if (!rows.some((r) => r.keyId === keyId)) problems.push(`reported key ${keyId} has no row`);
  return problems;
}

/** Whether this process may mount file systems (root in a sandbox that allows it). */
export function canMount(scratch: string): boolean {
  if (process.getuid?.() !== 0) return false;
  const dir = join(scratch, 'mount-probe');
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

export function mount(args: string[]): void {
  execFileSync('mount', args, { stdio: 'pipe' });
}

/** Unmounts, lazily when something still holds it open, so a failed test cannot leave it behind. */
export function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
}

/**
 * Leases the job server granted that no driver ever ran: each lease must show up in a driver's
 * log as the outcome of that job and attempt. A poll the driver gave up on after the server had
 * leased it a job loses that job until its lease expires.
 */
export function unseenLeases(jobs: JobView[], drivers: DriverProcess[]): string[] {
  const seen = new Set(drivers.flatMap((d) => d.logs.filter((l) => l.msg === 'job done' || l.msg === 'job answer not delivered').map((l) => `${String(l.jobId)}#${String(l.attempt)}`)));
  return jobs.flatMap((j) => j.leases.filter((l) => !seen.has(`${j.id}#${l.attempt}`)).map((l) => `${j.id} attempt ${l.attempt} leased at ${l.at}`));
}
