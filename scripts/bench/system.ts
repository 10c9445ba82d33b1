// The whole system as separate processes on this machine, for the demo and the benchmark: the
// dev SoftHSM token, the runbook's PKI, the reference job server and `hsm-driver run`, driven
// through the job server's admin API.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const root = join(import.meta.dirname, '..', '..');
export const dev = join(root, '.dev');
const node = process.execPath;

function sh(script: string, ...args: string[]): string {
  return execFileSync('bash', [join(root, 'scripts', script), ...args], { encoding: 'utf8' }).trim();
}

/** The dev token's variables (dev-hsm.sh makes it once, in `tokenDir`) and the PKI directory (pki.sh). */
export function devSetup(tokenDir = join(dev, 'softhsm')): { token: Record<string, string>; pki: string } {
  const token = Object.fromEntries([...readFileSync(sh('dev-hsm.sh', tokenDir), 'utf8').matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  const pki = join(dev, 'pki');
  sh('pki.sh', pki, 'driver');
  if (!existsSync(join(root, 'dist/hsm-driver.cjs'))) execFileSync(node, [join(root, 'build/bundle.mjs')], { stdio: 'inherit' });
  return { token, pki };
}

export interface Started {
  proc: ChildProcess;
  match: RegExpMatchArray;
  output: () => string;
}

/** Starts a Node process and resolves with it once a line on stdout/stderr matches. */
export async function startUntil(args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<Started> {
  const proc = spawn(node, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      // Only the start is kept: a long run's logs would grow without bound.
      if (output.length < 1 << 20) output += chunk.toString();
      const m = output.match(ready);
      if (m) resolve(m);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`${args[0]} exited ${code} before it was ready:\n${output}`)));
    setTimeout(() => reject(new Error(`${args[0]} not ready after 60 s:\n${output}`)), 60_000).unref();
  });
  return { proc, match, output: () => output };
}

/** Sends SIGTERM and resolves with the exit code. */
export async function stop(p: Started): Promise<number | null> {
  if (p.proc.exitCode !== null) return p.proc.exitCode;
  p.proc.kill('SIGTERM');
  const [code] = (await once(p.proc, 'exit')) as [number | null];
  return code;
}

export interface JobServerProcess extends Started {
  proxyAddr: string;
  adminUrl: string;
}

export async function startJobServer(pki: string, extra: string[] = []): Promise<JobServerProcess> {
  const server = await startUntil(
    [join(root, 'scripts/job-server.ts'), '--cert', join(pki, 'server.pem'), '--key', join(pki, 'server.key'), '--ca', join(pki, 'api-ca.pem'), '--admin-port', '0', ...extra],
    process.env,
    /listening on https:\/\/([\d.]+:\d+)[\s\S]*admin on (http:\/\/[\d.]+:\d+)/,
  );
  return { ...server, proxyAddr: server.match[1]!, adminUrl: server.match[2]! };
}

/** `hsm-driver run` (the bundle) against `server`, resolved once it logs the running state. */
export function startDriver(server: JobServerProcess, pki: string, env: NodeJS.ProcessEnv, args: string[] = []): Promise<Started> {
  return startUntil(
    [join(root, 'dist/hsm-driver.cjs'), 'run', '--proxy-addr', server.proxyAddr, '--client-cert', join(pki, 'driver-chain.pem'), '--client-key', join(pki, 'driver.key'), '--ca-cert', join(pki, 'api-ca.pem'), ...args],
    env,
    /"state":"running"/,
  );
}

export async function admin(url: string, method: string, body?: unknown): Promise<any> {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Enqueues `jobs` at once and resolves with their final views, in order, once all are completed. */
export async function runJobs(adminUrl: string, jobs: Array<{ kind: string; input: unknown }>, timeoutMs = 300_000): Promise<any[]> {
  const before = (await admin(`${adminUrl}/admin/stats`, 'GET')).jobs.completed as number;
  const { ids } = (await admin(`${adminUrl}/admin/jobs`, 'POST', jobs)) as { ids: string[] };
  const deadline = Date.now() + timeoutMs;
  // Wait on the server's counters (one cheap call) rather than asking after every job.
  while ((await admin(`${adminUrl}/admin/stats`, 'GET')).jobs.completed < before + ids.length) {
    if (Date.now() > deadline) throw new Error(`jobs not completed in ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const all = new Map(((await admin(`${adminUrl}/admin/jobs`, 'GET')) as any[]).map((j) => [j.id, j]));
  return ids.map((id) => all.get(id));
}

/** CPU time a process has used so far, user + system, in ms (Linux; clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resident set size of a process, in MiB (Linux). */
export function rssMiB(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
}
