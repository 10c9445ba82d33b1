// Runs the built driver (a bundle global-setup builds outside the repo) as a child process against the SoftHSM2 test
// tokens of global-setup, with an environment holding only what the test means, and reads its
// one-line JSON answers.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { OPTIONS } from '../../runtime/config.js';
import { readEnvFile } from './global-setup.js';


/** The algorithms of PROTOCOL.md, written out here rather than taken from the code under test. */
export const PROTOCOL_ALGORITHMS = ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519', 'rsa-2048', 'rsa-3072', 'rsa-4096'] as const;
export type ProtocolAlgorithm = (typeof PROTOCOL_ALGORITHMS)[number];

/** good: master key made with --private; weak: plain pkcs11-tool, CKA_PRIVATE=false. */
export type TokenName = 'good' | 'weak';

const TOKEN_VARS = ['SOFTHSM2_CONF', 'PKCS11_MODULE', 'TOKEN_LABEL', 'MASTER_KEY_LABEL', 'USER_PIN_FILE'] as const;
/** Every variable the driver reads, cleared before a run so the tester's shell cannot leak in. */
const DRIVER_VARS = [
  ...Object.values(OPTIONS).map((o) => o.env),
  ...TOKEN_VARS,
  'USER_PIN',
  'JOB_INPUT',
  'JOB_INPUT_FILE',
  'PKCS11_THALES_MODULE',
  'PKCS11_SECUROSYS_MODULE',
  'PKCS11_IBM_MODULE',
];

/** The variables that select a test token and its PIN file. */
export function tokenEnv(token: TokenName): Record<string, string> {
  if (token === 'weak') return readEnvFile(mustHave('TEST_WEAK_TOKEN_ENV'));
  return Object.fromEntries(TOKEN_VARS.map((name) => [name, mustHave(name)]));
}

/** The real user PIN of a test token. */
export function tokenPin(token: TokenName): string {
  return readFileSync(tokenEnv(token).USER_PIN_FILE!, 'utf8').trim();
}

function mustHave(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests through vitest (global-setup makes the tokens)`);
  return value;
}

export interface RunOptions {
  token?: TokenName;
  /** Set on top of the token's variables; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  stdin?: string;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

export interface WireErrorJson {
  code: string;
  message: string;
  retryable: boolean;
}

/** A one-shot's answer: the `output` object (its shape is each test's business) or the error. */
export interface JobResult extends RunResult {
  output?: Record<string, any>;
  error?: WireErrorJson;
}

/** A driver command running in the background (for signals sent while it works). */
export interface Started {
  proc: ChildProcess;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the first stderr line `match` accepts; rejects if the process exits first. */
  waitForStderr(match: (line: string) => boolean): Promise<string>;
  /** Resolves once it has exited. */
  exited: Promise<RunResult>;
}

export interface Cli {
  run(args: string[], opts?: RunOptions): RunResult;
  /** Starts a command without waiting for it (same environment as run). */
  start(args: string[], opts?: RunOptions): Started;
  /** The environment run gives the driver, and its command line, for running it some other way (under `script`). */
  env(opts?: RunOptions): Record<string, string>;
  argv(args: string[]): string[];
  /** A one-shot job with its input on stdin; checks the one-line, exit 0/1 contract. */
  job(kind: 'keygen' | 'sign' | 'health', input: unknown, opts: RunOptions & { store: string[] }): JobResult;
  /** Flags for a SQLite file of its own. */
  sqlite(): string[];
  /** A fresh path in this file's temp dir. */
  path(name: string): string;
}

/** Registers hooks making a temp dir for one test file; runs global-setup's bundle, built outside the repo. */
export function useCli(): Cli {
  let dir = '';
  let bin = '';
  let count = 0;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hsm-cli-'));
    bin = mustHave('HSM_DRIVER_BUNDLE');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const envFor = (opts: RunOptions): Record<string, string> => {
    const env: Record<string, string | undefined> = {
      ...process.env,
      ...Object.fromEntries(DRIVER_VARS.map((name) => [name, undefined])),
      XDG_DATA_HOME: dir, // so a default SQLite path never lands in the tester's home
      RESIDENT_ALGORITHMS: 'eddsa-ed25519',
      ...tokenEnv(opts.token ?? 'good'),
      ...opts.env,
    };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    return env as Record<string, string>;
  };

  const run = (args: string[], opts: RunOptions = {}): RunResult => {
    const res = spawnSync(process.execPath, [bin, ...args], { env: envFor(opts), input: opts.stdin ?? '', encoding: 'utf8', timeout: 120_000 });
    if (res.status === null) throw new Error(`hsm-driver ${args.join(' ')} did not exit (${res.signal ?? res.error?.message})\n${res.stderr}`);
    return { status: res.status, stdout: res.stdout, stderr: res.stderr };
  };

  const start = (args: string[], opts: RunOptions = {}): Started => {
    const proc = spawn(process.execPath, [bin, ...args], { env: envFor(opts), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const waiters: Array<() => void> = [];
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      for (const w of waiters.splice(0)) w();
    });
    const exited = new Promise<RunResult>((resolve) => proc.on('close', (code, signal) => resolve({ status: code ?? (signal ? 128 : -1), stdout, stderr })));
    const waitForStderr = (match: (line: string) => boolean) =>
      new Promise<string>((resolve, reject) => {
        const look = () => {
          const found = stderr.split('\n').slice(0, -1).find(match);
          if (found !== undefined) return resolve(found);
          if (proc.exitCode !== null || proc.signalCode !== null) return reject(new Error(`exited before the line came\n${stderr}`));
          waiters.push(look);
        };
        void exited.then(look);
        look();
      });
    return { proc, stderr: () => stderr, waitForStderr, exited };
  };

  return {
    run,
    start,
    env: (opts = {}) => envFor(opts),
    argv: (args) => [process.execPath, bin, ...args],
    job(kind, input, opts) {
      const res = run([kind, ...opts.store], { ...opts, stdin: opts.stdin ?? JSON.stringify(input) });
      return { ...res, ...parseAnswer(res) };
    },
    sqlite: () => ['--sqlite-path', join(dir, `keys-${++count}.db`)],
    path: (name) => join(dir, `${++count}-${name}`),
  };
}

/** The one stdout line of a one-shot; throws (failing the test) when the contract is broken. */
export function parseAnswer(res: RunResult): { output?: Record<string, any>; error?: WireErrorJson } {
  const context = `exit ${res.status}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`;
  const lines = res.stdout.split('\n');
  if (lines.length !== 2 || lines[1] !== '') throw new Error(`expected exactly one stdout line\n${context}`);
  let answer: Record<string, any>;
  try {
    answer = JSON.parse(lines[0]!) as Record<string, any>;
  } catch {
    throw new Error(`stdout is not JSON\n${context}`);
  }
  const keys = Object.keys(answer);
  if (keys.length !== 1 || !(keys[0] === 'output' || keys[0] === 'error')) throw new Error(`expected {output} or {error}\n${context}`);
  if (res.status !== (keys[0] === 'output' ? 0 : 1)) throw new Error(`exit status does not match the answer\n${context}`);
  return answer;
}
