// The end-to-end half of `npm run bench`: jobs through the reference job server, mTLS and `hsm-driver run` onto the token, timed as the job server saw them.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { cpuMs, runJobs, rssMiB, startDriver, startJobServer, stop, type Started } from './system.ts';

export interface BenchContext {
  /** The bench token's environment (scripts/dev-hsm.sh's env file). */
  token: Record<string, string>;
  pki: string;
  /** Scratch directory for database files. */
  workDir: string;
}

export interface DriverRun {
  algorithm: string;
  job: 'sign' | 'keygen';
  sessions: number;
  concurrency: number;
  /** Extra `run` flags (the key cache's). */
  extraArgs: string[];
  /** Jobs sized from the raw rate; cut back when the warm-up shows they would take longer than capSeconds. */
  jobs: number;
  minJobs: number;
  capSeconds: number;
  warmupJobs: number;
}

export interface DriverResult {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** First lease to last answer, as the job server recorded them. */
  seconds: number;
  /** The driver's resident set after the measured batch. */
  rssMiB: number;
  /** Jobs measured: run.jobs, or fewer when the cap applied. */
  jobs: number;
  /** CPU time per measured job of the driver process (SoftHSM runs inside it) and of the job server. */
  driverCpuMsPerJob: number;
  serverCpuMsPerJob: number;
}

/** A job that ended in an error: the bench is void, since a failure can be faster than a sign. */
export class JobFailed extends Error {}

/** The driver exited before it was running: with extra flags, most likely an older build refusing them. */
export class DriverRefused extends Error {}

/** Keys the sign runs spread their jobs over. */
const KEYS = 16;

/** Every job in the store's environment: resident Ed25519 (SoftHSM cannot wrap it), logs at info so startDriver sees "running". */
export function driverEnv(ctx: BenchContext, store: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, ...ctx.token, RESIDENT_ALGORITHMS: 'eddsa-ed25519', LOG_LEVEL: 'info', SQLITE_PATH: '', POSTGRES_URL: '', ...store };
}

/** A sign job's input: a 32-byte digest for ECDSA, a 32-byte message for Ed25519 (which hashes itself). */
export function signInput(algorithm: string, keyId: string): Record<string, string> {
  const data = randomBytes(32).toString('hex');
  return algorithm === 'eddsa-ed25519' ? { keyId, data, encoding: 'message' } : { keyId, data, encoding: 'digest' };
}

/** Runs jobs and throws JobFailed with the first error unless every one returned a result. */
export async function runChecked(adminUrl: string, jobs: Array<{ kind: string; input: unknown }>): Promise<any[]> {
  const views = await runJobs(adminUrl, jobs);
  const failed = views.find((j) => j?.result === undefined || j.error !== undefined);
  if (failed) {
    const failures = views.filter((j) => j?.result === undefined || j.error !== undefined).length;
    throw new JobFailed(`${failures} of ${views.length} ${jobs[0]?.kind} jobs failed; first (${failed?.id}): ${JSON.stringify(failed?.error ?? failed)}`);
  }
  return views;
}

/** One driver started for `run` on a fresh SQLite file and a fresh job server; both stopped before it returns. */
export async function runDriver(ctx: BenchContext, run: DriverRun): Promise<DriverResult> {
  const db = join(ctx.workDir, 'e2e-keys.db');
  const removeDb = () => {
    for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });
  };
  removeDb();
  const server = await startJobServer(ctx.pki);
  let driver: Started | undefined;
  try {
    const args = ['--sessions', String(run.sessions), '--concurrency', String(run.concurrency), ...run.extraArgs];
    try {
      driver = await startDriver(server, ctx.pki, driverEnv(ctx, { SQLITE_PATH: db }), args);
    } catch (err) {
      if (run.extraArgs.length > 0) throw new DriverRefused((err as Error).message);
      throw err;
    }
    const { algorithm } = run;
    let batch: (n: number, tag: string) => Array<{ kind: string; input: unknown }>;
    if (run.job === 'sign') {
      await runChecked(server.adminUrl, Array.from({ length: KEYS }, (_, i) => ({ kind: 'keygen', input: { keyId: `k${i}`, algorithm } })));
      batch = (n) => Array.from({ length: n }, (_, i) => ({ kind: 'sign', input: signInput(algorithm, `k${i % KEYS}`) }));
    } else {
      batch = (n, tag) => Array.from({ length: n }, (_, i) => ({ kind: 'keygen', input: { keyId: `${tag}${i}`, algorithm } }));
    }
    // The warm-up pays for first-use costs (TLS sessions, JIT, SQLite pages) outside the measurement.
    const warm = timing(await runChecked(server.adminUrl, batch(run.warmupJobs, 'w')));
    // Sized at the raw rate, a batch can take minutes where the driver is far slower than the
    // token (Ed25519: ~20k/s raw); the warm-up's rate bounds it, never below minJobs.
    const count = Math.min(run.jobs, Math.max(run.minJobs, Math.round(warm.opsPerSec * run.capSeconds)));
    const cpuBefore = [cpuMs(driver.proc.pid!), cpuMs(server.proc.pid!)] as const;
    const jobs = await runChecked(server.adminUrl, batch(count, 'm'));
    const [driverCpu, serverCpu] = [cpuMs(driver.proc.pid!) - cpuBefore[0], cpuMs(server.proc.pid!) - cpuBefore[1]];
    return { ...timing(jobs), rssMiB: round(rssMiB(driver.proc.pid!), 1), jobs: count, driverCpuMsPerJob: round(driverCpu / count, 3), serverCpuMsPerJob: round(serverCpu / count, 3) };
  } finally {
    if (driver) await stop(driver);
    await stop(server);
    removeDb();
  }
}

/** Throughput from the first lease to the last accepted answer; latency = a job's lease to its answer. */
export function timing(jobs: any[]): Omit<DriverResult, 'rssMiB' | 'jobs' | 'driverCpuMsPerJob' | 'serverCpuMsPerJob'> {
  const leased = (j: any) => Date.parse(j.leases[0].at);
  const answered = (j: any) => Date.parse((j.answers.find((a: any) => a.status === 204) ?? j.answers.at(-1)).at);
  const first = Math.min(...jobs.map(leased));
  const last = Math.max(...jobs.map(answered));
  const latencies = jobs.map((j) => answered(j) - leased(j)).sort((a, b) => a - b);
  // The job server's clock has millisecond steps; a batch shorter than one would divide by zero.
  const seconds = Math.max(last - first, 1) / 1000;
  return { opsPerSec: round(jobs.length / seconds, 1), p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99), seconds: round(seconds, 3) };
}

/** Nearest rank, as raw.ts computes it. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
