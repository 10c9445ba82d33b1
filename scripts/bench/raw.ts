// The raw half of `npm run bench`: how fast the token itself is, with PKCS#11 called directly from worker threads and no driver around it.
//
//   import { runRaw } from './bench/raw.ts';   or, from a shell (one JSON line on stdout):
//   node scripts/bench/raw.ts --algorithm ecdsa-secp256k1 --op unwrap-sign --sessions 2 --seconds 3
//
// The CLI takes its token from the environment scripts/dev-hsm.sh writes (PKCS11_MODULE,
// TOKEN_LABEL, MASTER_KEY_LABEL, USER_PIN_FILE, SOFTHSM2_CONF) unless flags override it.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
// The default import is module.exports: Node sees only `PKCS11` among pkcs11js's named exports
// (it builds them with a spread), so `import * as` would leave every CK* constant undefined.
import pkcs11 from 'pkcs11js';

export type RawAlgorithm = 'ecdsa-secp256k1' | 'ecdsa-p256' | 'eddsa-ed25519';
export type RawOp = 'unwrap-sign' | 'persistent-sign' | 'keygen-wrap';

export interface RawOptions {
  /** PKCS#11 library path. */
  module: string;
  tokenLabel: string;
  pin: string;
  /** AES master key (wrap/unwrap), found by CKA_LABEL among CKO_SECRET_KEY objects. */
  masterKeyLabel: string;
  algorithm: RawAlgorithm;
  op: RawOp;
  /** Worker threads, one PKCS#11 session each. */
  sessions: number;
  /** Length of the measuring window, after the warm-up. */
  seconds: number;
  /** Default 0.3 s: long enough for the token's first-use costs to be paid outside the window. */
  warmupSeconds?: number;
  /** Default CKM_AES_KEY_WRAP_PAD (0x210A), the driver's default. */
  wrapMechanism?: number;
}

export interface RawResult {
  algorithm: RawAlgorithm;
  /** 'keygen' for Ed25519 keygen-wrap: SoftHSM 2.6 cannot wrap Ed25519 keys, so that loop skips the wrap. */
  op: RawOp | 'keygen';
  sessions: number;
  /** Operations completed inside the measuring window, all workers together. */
  ops: number;
  /** The measuring window's length. */
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Objects (session or token) alive after the run that were not there before it: should be 0. */
  leftoverObjects: number;
}

/** What each worker is started with (structured-cloned into the thread). */
export interface WorkerInput {
  module: string;
  /** The slot handle; arrives as a Uint8Array, since cloning drops the Buffer class. */
  slot: Uint8Array;
  pin: string;
  masterKeyLabel: string;
  algorithm: RawAlgorithm;
  op: RawOp;
  wrapMechanism: number;
  /** process.hrtime.bigint() at the start: all threads read the same monotonic clock, so times relative to it compare across workers. */
  base: bigint;
  /** Int32 at 0: 0 wait, 1 go, 2 abort. Float64 at 8 and 16: the measuring window, ms after base. */
  control: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'done'; latencies: Float64Array }
  | { type: 'error'; message: string };

const GO = 1;
const ABORT = 2;

const ALGORITHMS: readonly RawAlgorithm[] = ['ecdsa-secp256k1', 'ecdsa-p256', 'eddsa-ed25519'];
const OPS: readonly RawOp[] = ['unwrap-sign', 'persistent-sign', 'keygen-wrap'];

export async function runRaw(options: RawOptions): Promise<RawResult> {
  const { algorithm, op, sessions, seconds } = options;
  if (!ALGORITHMS.includes(algorithm)) throw new Error(`raw bench: unknown algorithm ${algorithm}`);
  if (!OPS.includes(op)) throw new Error(`raw bench: unknown op ${op}`);
  if (!Number.isInteger(sessions) || sessions < 1) throw new Error(`raw bench: sessions must be a positive integer`);
  if (!(seconds > 0)) throw new Error(`raw bench: seconds must be positive`);
  const warmupMs = (options.warmupSeconds ?? 0.3) * 1000;

  // The main thread keeps a session of its own for the whole run: the login lasts while any
  // session is open, and it counts objects at the end while the workers' sessions are still
  // open (closing a session would silently destroy what a worker forgot).
  const lib = new pkcs11.PKCS11();
  lib.load(options.module);
  let initializedHere = false;
  try {
    lib.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK });
    initializedHere = true;
  } catch (err) {
    if (rvOf(err) !== pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw named(err, 'C_Initialize');
  }
  let session: Buffer | undefined;
  const workers: Array<{ worker: Worker; exited: Promise<unknown> }> = [];
  const control = new SharedArrayBuffer(24);
  const state = new Int32Array(control, 0, 1);
  const window = new Float64Array(control, 8, 2);
  try {
    const slot = findSlot(lib, options.tokenLabel);
    try {
      session = lib.C_OpenSession(slot, pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION);
    } catch (err) {
      throw named(err, 'C_OpenSession');
    }
    try {
      lib.C_Login(session, pkcs11.CKU_USER, options.pin);
    } catch (err) {
      if (rvOf(err) !== pkcs11.CKR_USER_ALREADY_LOGGED_IN) throw named(err, 'C_Login');
    }
    const before = countObjects(lib, session);

    const base = process.hrtime.bigint();
    const input: WorkerInput = {
      module: options.module,
      slot,
      pin: options.pin,
      masterKeyLabel: options.masterKeyLabel,
      algorithm,
      op,
      wrapMechanism: options.wrapMechanism ?? pkcs11.CKM_AES_KEY_WRAP_PAD,
      base,
      control,
    };
    const inboxes = [];
    for (let i = 0; i < sessions; i++) {
      const worker = new Worker(new URL('./raw-worker.ts', import.meta.url), { workerData: input });
      workers.push({ worker, exited: new Promise((resolve) => worker.once('exit', resolve)) });
      inboxes.push(mailbox(worker));
    }
    let latencies: Float64Array[];
    try {
      await Promise.all(inboxes.map((next) => expect(next, 'ready')));
      const now = Number(process.hrtime.bigint() - base) / 1e6;
      window[0] = now + warmupMs;
      window[1] = now + warmupMs + seconds * 1000;
      Atomics.store(state, 0, GO);
      Atomics.notify(state, 0);
      latencies = (await Promise.all(inboxes.map((next) => expect(next, 'done')))).map((m) => m.latencies);
    } catch (err) {
      // Workers still waiting for the start, or still looping, stop at once.
      Atomics.store(state, 0, ABORT);
      Atomics.notify(state, 0);
      throw err;
    }
    const after = countObjects(lib, session);

    const all = concat(latencies);
    all.sort();
    const windowSeconds = (window[1]! - window[0]!) / 1000;
    return {
      algorithm,
      op: op === 'keygen-wrap' && algorithm === 'eddsa-ed25519' ? 'keygen' : op,
      sessions,
      ops: all.length,
      seconds: round(windowSeconds, 3),
      opsPerSec: round(all.length / windowSeconds, 1),
      p50Ms: round(percentile(all, 0.5), 3),
      p99Ms: round(percentile(all, 0.99), 3),
      leftoverObjects: Math.max(0, after.session - before.session) + Math.max(0, after.token - before.token),
    };
  } finally {
    // Workers close their own sessions; the library is finalised only after they are gone, and
    // only if this call initialised it (a C_Finalize ends PKCS#11 for the whole process).
    await Promise.all(workers.map((w) => closeWorker(w.worker, w.exited)));
    if (session) {
      try {
        lib.C_CloseSession(session);
      } catch {
        /* the finalise below cleans up */
      }
    }
    if (initializedHere) {
      try {
        lib.C_Finalize();
      } catch {
        /* nothing left to do */
      }
    }
    lib.close();
  }
}

function rvOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** pkcs11js's error message is the CKR_ name; say which call it came from. */
function named(err: unknown, method: string): Error {
  return new Error(`${method} failed: ${(err as Error).message.split('\n')[0]}`);
}

function findSlot(lib: pkcs11.PKCS11, label: string): Buffer {
  const matches = lib.C_GetSlotList(true).filter((slot) => lib.C_GetTokenInfo(slot).label.replace(/\0+$/, '').trim() === label);
  if (matches.length !== 1) throw new Error(`raw bench: ${matches.length} tokens labelled "${label}"`);
  return matches[0]!;
}

/** Objects this application can see, session and token apart. */
function countObjects(lib: pkcs11.PKCS11, session: Buffer): { session: number; token: number } {
  const count = (token: boolean) => {
    lib.C_FindObjectsInit(session, [{ type: pkcs11.CKA_TOKEN, value: token }]);
    let n = 0;
    try {
      for (let batch = lib.C_FindObjects(session, 1000); batch.length > 0; batch = lib.C_FindObjects(session, 1000)) n += batch.length;
    } finally {
      lib.C_FindObjectsFinal(session);
    }
    return n;
  };
  return { session: count(false), token: count(true) };
}

/**
 * Queues a worker's messages as they arrive (none can be missed between two awaits) and hands
 * them out in order; an error message, an uncaught error or an early exit rejects.
 */
function mailbox(worker: Worker): () => Promise<WorkerMessage> {
  const inbox: WorkerMessage[] = [];
  let failure: Error | undefined;
  let waiter: { resolve: (m: WorkerMessage) => void; reject: (e: Error) => void } | undefined;
  const settle = () => {
    if (!waiter) return;
    const w = waiter;
    if (inbox.length > 0) {
      waiter = undefined;
      w.resolve(inbox.shift()!);
    } else if (failure) {
      waiter = undefined;
      w.reject(failure);
    }
  };
  worker.on('message', (m: WorkerMessage) => {
    if (m.type === 'error') failure ??= new Error(m.message);
    else inbox.push(m);
    settle();
  });
  worker.on('error', (err) => {
    failure ??= err;
    settle();
  });
  worker.on('exit', (code) => {
    failure ??= new Error(`raw bench worker exited (code ${code}) before it finished`);
    settle();
  });
  return () =>
    new Promise((resolve, reject) => {
      waiter = { resolve, reject };
      settle();
    });
}

async function expect<T extends WorkerMessage['type']>(next: () => Promise<WorkerMessage>, type: T): Promise<Extract<WorkerMessage, { type: T }>> {
  const m = await next();
  if (m.type !== type) throw new Error(`raw bench worker sent ${m.type}, expected ${type}`);
  return m as Extract<WorkerMessage, { type: T }>;
}

/** Asks a worker to close its session and exit; one stuck in a native call is terminated after 10 s. */
async function closeWorker(worker: Worker, exited: Promise<unknown>): Promise<void> {
  worker.postMessage('close'); // a no-op for a worker that already exited
  const timer = setTimeout(() => void worker.terminate(), 10_000);
  await exited;
  clearTimeout(timer);
}

function concat(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Nearest-rank percentile of sorted values; 0 when there are none. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      module: { type: 'string', default: process.env.PKCS11_MODULE },
      'token-label': { type: 'string', default: process.env.TOKEN_LABEL },
      'pin-file': { type: 'string', default: process.env.USER_PIN_FILE },
      'master-key-label': { type: 'string', default: process.env.MASTER_KEY_LABEL },
      algorithm: { type: 'string', default: 'ecdsa-secp256k1' },
      op: { type: 'string', default: 'unwrap-sign' },
      sessions: { type: 'string', default: '1' },
      seconds: { type: 'string', default: '3' },
      'wrap-mechanism': { type: 'string' },
    },
  });
  const need = (name: string, value: string | undefined) => {
    if (!value) throw new Error(`--${name} is required (or its environment variable from scripts/dev-hsm.sh)`);
    return value;
  };
  const result = await runRaw({
    module: need('module', values.module),
    tokenLabel: need('token-label', values['token-label']),
    pin: readFileSync(need('pin-file', values['pin-file']), 'utf8').trim(),
    masterKeyLabel: need('master-key-label', values['master-key-label']),
    algorithm: values.algorithm as RawAlgorithm,
    op: values.op as RawOp,
    sessions: Number(values.sessions),
    seconds: Number(values.seconds),
    ...(values['wrap-mechanism'] ? { wrapMechanism: Number(values['wrap-mechanism']) } : {}),
  });
  console.log(JSON.stringify(result));
  if (result.leftoverObjects > 0) {
    console.error(`raw bench: ${result.leftoverObjects} object(s) left behind on the token`);
    process.exitCode = 1;
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`raw bench: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
