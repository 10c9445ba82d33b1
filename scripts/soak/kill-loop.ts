// The kill loop of the fault suite and the soak: start a driver, wait until it has logged in and
// runs (never kill one during C_Login: SoftHSM 2.6 rewrites its token file in place then, and a
// kill can leave the token empty), let it work a random while, SIGKILL it, start the next;
// meanwhile keys are fed and followed up at a steady pace. A last driver then finishes the queue
// and stops with SIGTERM.
import { spawn } from 'node:child_process';
import type { Ledger } from './ledger.ts';

/** One driver process, as the loop needs it. */
export interface Killable {
  /** Resolves once the driver logs state running (it has logged in); rejects if it exits first. */
  running: Promise<void>;
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
  /** The end of its output, for a failure message. */
  tail(): string;
}

export interface KillLoopOptions {
  ledger: Ledger;
  /** Starts driver number `life` (0, 1, …). */
  start: (life: number) => Killable;
  random: () => number;
  /** Each driver is killed a random time in this range after it runs. */
  killAfterMs: readonly [number, number];
  keysPerSecond: number;
  /** Stop feeding after this many keys, or after durationMs, whichever comes first. */
  keys?: number;
  durationMs?: number;
  /** Keep killing until at least this many kills, even after feeding has stopped. */
  minKills: number;
  /** When given, a kill waits (up to a second) until the driver holds a lease, so it cuts work in flight. */
  holdsLease?: () => boolean;
  /** How long the last driver may take to finish the queue. */
  drainTimeoutMs: number;
  log?: (line: string) => void;
}

export interface KillLoopOutcome {
  kills: number;
  /** Kills made while the driver held at least one lease (when holdsLease was given). */
  killsWithLeases: number;
  /** Spawn → "running" of every driver, ms. */
  startMs: number[];
  /** "running" → SIGKILL of every killed driver, ms. */
  lifeMs: number[];
  /** Drivers that exited without being killed, with their code and output. */
  crashes: string[];
  /** The last driver's exit code after SIGTERM (0 when it drained). */
  finalExit: number | null;
  /** Whether every job had ended before the last driver was stopped. */
  settled: boolean;
  seconds: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Keys fed at a steady pace and their jobs followed up (sync every 100 ms) until stopped. */
export interface Feed {
  readonly feeding: boolean;
  /** Throws what the sync loop failed with, if anything. */
  check(): void;
  /** Resolves once every key has been added (or feeding was stopped). */
  fed: Promise<void>;
  stop(): Promise<void>;
}

export function feed(ledger: Ledger, o: { keysPerSecond: number; keys?: number; durationMs?: number }): Feed {
  const began = Date.now();
  let feeding = true;
  let syncing = true;
  let syncError: unknown;
  const fed = (async () => {
    try {
      for (let n = 0; feeding && (o.keys === undefined || n < o.keys) && (o.durationMs === undefined || Date.now() - began < o.durationMs); n++) {
        await ledger.addKey();
        await sleep(1000 / o.keysPerSecond);
      }
    } finally {
      feeding = false;
    }
  })();
  const syncer = (async () => {
    while (syncing) {
      try {
        await ledger.sync();
      } catch (err) {
        syncError = err;
        return;
      }
      await sleep(100);
    }
  })();
  return {
    get feeding() {
      return feeding;
    },
    check() {
      if (syncError) throw syncError;
    },
    fed,
    async stop() {
      feeding = false;
      syncing = false;
      await fed.catch(() => undefined);
      await syncer;
    },
  };
}

export async function killLoop(o: KillLoopOptions): Promise<KillLoopOutcome> {
  const began = Date.now();
  const out: KillLoopOutcome = { kills: 0, killsWithLeases: 0, startMs: [], lifeMs: [], crashes: [], finalExit: null, settled: false, seconds: 0 };
  const keys = feed(o.ledger, o);

  let life = 0;
  const startOne = async (): Promise<{ driver: Killable }> => {
    const spawned = Date.now();
    const n = life++;
    const driver = o.start(n);
    let killed = false;
    void driver.exited.then((code) => {
      if (!killed) out.crashes.push(`driver ${n} exited by itself (code ${code}):\n${driver.tail()}`);
    });
    const kill = driver.kill.bind(driver);
    driver.kill = (signal) => {
      killed = true;
      kill(signal);
    };
    await driver.running;
    out.startMs.push(Date.now() - spawned);
    return { driver };
  };

  try {
    while (keys.feeding || out.kills < o.minKills) {
      keys.check();
      const { driver } = await startOne();
      const ranAt = Date.now();
      const [min, max] = o.killAfterMs;
      await sleep(min + o.random() * (max - min));
      if (o.holdsLease) for (let i = 0; i < 50 && !o.holdsLease(); i++) await sleep(20);
      const withLease = o.holdsLease?.() ?? false;
      driver.kill('SIGKILL');
      await driver.exited;
      out.lifeMs.push(Date.now() - ranAt);
      out.kills++;
      if (withLease) out.killsWithLeases++;
      if (out.crashes.length > 0) break;
      o.log?.(`kill ${out.kills}: after ${Date.now() - ranAt} ms${withLease ? ', holding leases' : ''}; ${o.ledger.completedCount()} jobs done`);
    }
    await keys.fed;
    if (out.crashes.length === 0) {
      const { driver } = await startOne();
      const deadline = Date.now() + o.drainTimeoutMs;
      while (Date.now() < deadline && out.crashes.length === 0) {
        keys.check();
        await o.ledger.sync();
        if (o.ledger.settled) break;
        await sleep(200);
      }
      out.settled = o.ledger.settled;
      driver.kill('SIGTERM');
      out.finalExit = await driver.exited;
    }
  } finally {
    await keys.stop();
  }
  await o.ledger.sync(true);
  out.seconds = Math.round((Date.now() - began) / 100) / 10;
  return out;
}

/** Starts `program args` and watches its JSON log lines on stderr for the running state. */
export function spawnKillable(program: string, args: string[], env: NodeJS.ProcessEnv): Killable {
  const proc = spawn(program, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let tail = '';
  let pending = '';
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const running = new Promise<void>((resolve, reject) => {
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      tail = (tail + chunk).slice(-20_000);
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!.slice(-10_000);
      for (const line of lines) {
        if (!line.startsWith('{') || !line.includes('"driver state"')) continue;
        try {
          const parsed = JSON.parse(line) as { msg?: string; state?: string };
          if (parsed.msg === 'driver state' && parsed.state === 'running') resolve();
        } catch {
          // Not a log line of ours.
        }
      }
    });
    void exited.then((code) => reject(new Error(`driver exited (code ${code}) before it was running:\n${tail.slice(-3000)}`)));
  });
  running.catch(() => undefined);
  return { running, exited, kill: (signal) => void proc.kill(signal), tail: () => tail.slice(-3000) };
}
