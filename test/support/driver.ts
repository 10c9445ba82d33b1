// Runs `hsm-driver run` (global-setup's bundle) as a child process against a job server, and
// collects its JSON log lines so tests can wait for state changes and job outcomes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { startJobServer, type JobServer, type JobServerOptions } from '../../scripts/job-server.js';
import { makePki, serverTls, type Pki } from '../scripts/helpers.js';
import { tokenEnv } from './cli.js';

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface DriverProcess {
  proc: ChildProcess;
  logs: LogLine[];
  /** Everything on stderr, for checks that no secret appears. */
  stderr(): string;
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Sends a signal and resolves with the exit code and how long the exit took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; ms: number }>;
  exited: Promise<number | null>;
}

export interface SpawnOptions {
  pki: Pki;
  proxyAddr: string;
  sqlitePath: string;
  /** Client certificate chain, key and CA files (names inside the PKI dir). */
  clientCert?: string;
  clientKey?: string;
  caCert?: string;
  args?: string[];
  env?: Record<string, string | undefined>;
  /** What runs: the bundle on the repo's Node 24, or the single binary (issue: both in CI). */
  target?: DriverTarget;
}

export type DriverTarget = 'bundle' | 'binary';
/** Every end-to-end run file covers both. */
export const TARGETS: DriverTarget[] = ['bundle', 'binary'];

function command(target: DriverTarget): [string, string[]] {
  return target === 'binary' ? [process.env.HSM_DRIVER_BINARY!, []] : [process.execPath, [process.env.HSM_DRIVER_BUNDLE!]];
}

export function spawnDriver(o: SpawnOptions): DriverProcess {
  const env: Record<string, string | undefined> = {
    ...process.env,
    ...tokenEnv('good'),
    RESIDENT_ALGORITHMS: 'eddsa-ed25519',
    LOG_LEVEL: 'debug',
    ...o.env,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const [program, prefix] = command(o.target ?? 'bundle');
  const args = [
    ...prefix,
    'run',
    '--proxy-addr', o.proxyAddr,
    '--client-cert', o.pki.file(o.clientCert ?? 'driver-chain.pem'),
    '--client-key', o.pki.file(o.clientKey ?? 'driver.key'),
    '--ca-cert', o.pki.file(o.caCert ?? 'api-ca.pem'),
    '--sqlite-path', o.sqlitePath,
    '--poll-wait', '2',
    '--backoff-max', '1',
    '--health-interval', '1',
    ...(o.args ?? []),
  ];
  const proc = spawn(program, args, { env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let stderr = '';
  let pending = '';
  const watchers: Array<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const text of lines) {
      if (!text.startsWith('{')) continue;
      const line = JSON.parse(text) as LogLine;
      logs.push(line);
      for (const w of [...watchers]) if (w.match(line)) watchers.splice(watchers.indexOf(w), 1) && w.resolve(line);
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    logs,
    exited,
    stderr: () => stderr,
    waitForLog(match, timeoutMs = 20_000) {
      const seen = logs.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line in ${timeoutMs} ms; stderr:\n${stderr.slice(-3000)}`)), timeoutMs);
        watchers.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      });
    },
    async stop(signal = 'SIGTERM') {
      const started = Date.now();
      if (proc.exitCode === null) proc.kill(signal);
      const code = await exited;
      return { code, ms: Date.now() - started };
    },
  };
}

/**
 * driver-a as the bundle and driver-b as the single binary, each with its own client certificate
 * (makePki('driver-a', 'driver-b')), on one PostgreSQL database.
 */
export function spawnDriverPair(o: Pick<SpawnOptions, 'pki' | 'proxyAddr' | 'sqlitePath' | 'env'> & { postgresUrl: string; args?: string[] }): DriverProcess[] {
  return (['driver-a', 'driver-b'] as const).map((name, i) =>
    spawnDriver({
      ...o,
      target: i === 0 ? 'bundle' : 'binary',
      clientCert: `${name}-chain.pem`,
      clientKey: `${name}.key`,
      args: ['--postgres-url', o.postgresUrl, ...(o.args ?? [])],
    }),
  );
}

export const stateIs = (state: string) => (l: LogLine) => l.msg === 'driver state' && l.state === state;
export const jobDone = (id: string) => (l: LogLine) => l.jobId === id && (l.msg === 'job done' || l.msg === 'job answer not delivered');

export interface RunFixture {
  pki: Pki;
  server: JobServer;
  /** The driver a test started; afterEach stops it. */
  driver: DriverProcess | undefined;
  /** More drivers a test started (spawnDriverPair); afterEach stops them too. */
  drivers: DriverProcess[];
  /** The build under test (set per describe.each block). */
  target: DriverTarget;
  /** A new SQLite path in the file's temp dir. */
  freshDb(): string;
}

/** Registers the hooks an end-to-end run file needs: a PKI, a job server, and cleanup. */
export function useRunFixture(name: string, pkiNames: string[], serverOptions: Partial<JobServerOptions> = {}): RunFixture {
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  let n = 0;
  const fx = { driver: undefined, drivers: [] as DriverProcess[], target: 'bundle', freshDb: () => join(dir, `keys-${++n}.db`) } as RunFixture;
  beforeAll(async () => {
    fx.pki = makePki(...pkiNames);
    fx.server = await startJobServer({ ...serverTls(fx.pki), ...serverOptions });
  });
  afterEach(async () => {
    await Promise.all([fx.driver, ...fx.drivers].map((d) => d?.stop('SIGTERM')));
    fx.driver = undefined;
    fx.drivers = [];
  });
  afterAll(async () => {
    await fx.server?.close();
    fx.pki?.remove();
  });
  return fx;
}
