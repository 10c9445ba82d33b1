// The start-up half of `npm run bench`: exec of `hsm-driver run` to its first poll, and its RSS, with a key store holding 100,000 keys (SQLite or PostgreSQL).
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { driverEnv, round, runChecked, signInput, type BenchContext } from './e2e.ts';
import { admin, rssMiB, startDriver, startJobServer, stop, type JobServerProcess, type Started } from './system.ts';

// KEY_COLUMNS comes from the driver's own migrations, so the fill follows the schema. Node does
// not map runtime/'s `.js` specifiers onto its `.ts` files (tsc and esbuild do); this hook does,
// for runtime/ only, and the import is dynamic so that it runs after the hook is in place.
const runtimeDir = new URL('../../runtime/', import.meta.url).href;
registerHooks({
  resolve(specifier, context, next) {
    const url = specifier.startsWith('.') && context.parentURL ? new URL(specifier, context.parentURL).href : '';
    return next(url.startsWith(runtimeDir) && url.endsWith('.js') ? `${url.slice(0, -3)}.ts` : specifier, context);
  },
});
const { KEY_COLUMNS } = await import('../../runtime/store/migrations.js');

export type StoreKind = 'sqlite' | 'postgres';

export interface StartupOptions {
  store: StoreKind;
  keys: number;
  /** Start-ups timed; the median is reported. */
  runs: number;
  signJobs: number;
  sessions: number;
  concurrency: number;
  /** PostgreSQL server URL; a fresh database is made on it and dropped afterwards. */
  pgUrl: string;
}

export interface StartupResult {
  startup: { store: StoreKind; keys: number; firstPollMs: number; runsMs: number[] };
  rss: { store: StoreKind; keys: number; afterStartMiB: number; afterSignsMiB: number };
}

/** The algorithm of the stored keys: wrapped on SoftHSM, so every row is a copy of one real blob. */
const ALGORITHM = 'ecdsa-secp256k1';
const SEED = 'seed';

export async function measureStartup(ctx: BenchContext, o: StartupOptions): Promise<StartupResult> {
  const store = o.store === 'sqlite' ? sqliteStore(ctx) : await postgresStore(o.pgUrl);
  const server = await startJobServer(ctx.pki);
  let driver: Started | undefined;
  try {
    const env = driverEnv(ctx, store.env);
    const args = ['--sessions', String(o.sessions), '--concurrency', String(o.concurrency)];
    // The driver makes the schema and one real key; the rest are copies of its row under other ids.
    driver = await startDriver(server, ctx.pki, env, args);
    await runChecked(server.adminUrl, [{ kind: 'keygen', input: { keyId: SEED, algorithm: ALGORITHM } }]);
    await stop(driver);
    driver = undefined;
    await store.fill(o.keys);

    const runsMs: number[] = [];
    let afterStartMiB = 0;
    for (let run = 0; run < o.runs; run++) {
      const started = Date.now();
      driver = await startDriver(server, ctx.pki, env, args);
      runsMs.push((await firstPollAt(server, started)) - started);
      if (run < o.runs - 1) {
        await stop(driver);
        driver = undefined;
      }
    }
    afterStartMiB = rssMiB(driver!.proc.pid!);
    // Each sign reads a different row, as a busy driver with many keys would.
    await runChecked(server.adminUrl, Array.from({ length: o.signJobs }, (_, i) => ({ kind: 'sign', input: signInput(ALGORITHM, `bench-${i + 1}`) })));
    const afterSignsMiB = rssMiB(driver!.proc.pid!);
    const sorted = [...runsMs].sort((a, b) => a - b);
    return {
      startup: { store: o.store, keys: o.keys, firstPollMs: sorted[Math.floor((sorted.length - 1) / 2)]!, runsMs },
      rss: { store: o.store, keys: o.keys, afterStartMiB: round(afterStartMiB, 1), afterSignsMiB: round(afterSignsMiB, 1) },
    };
  } finally {
    if (driver) await stop(driver);
    await stop(server);
    await store.drop();
  }
}

/** When the job server recorded the first poll at or after `since` (epoch ms). */
async function firstPollAt(server: JobServerProcess, since: number): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const polls = (await admin(`${server.adminUrl}/admin/polls`, 'GET')) as Array<{ at: string }>;
    const times = polls.map((p) => Date.parse(p.at)).filter((t) => t >= since);
    if (times.length > 0) return Math.min(...times);
    if (Date.now() > deadline) throw new Error('the driver did not poll within 60 s of starting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface BenchStore {
  env: Record<string, string>;
  /** Copies the seed row until the table holds `keys` rows. */
  fill(keys: number): Promise<void>;
  drop(): Promise<void>;
}

/** The seed row's other columns, in KEY_COLUMNS order. */
// The copies keep the seed's key but not its seal: a seal binds a row to its keyId, and a copied
// seal is what the driver refuses (KEY_INTEGRITY). Unsealed, they sign with a warning.
const otherColumns = () => KEY_COLUMNS.split(',').map((c) => c.trim()).slice(1).map((c) => (c === 'seal' ? 'NULL' : c)).join(', ');

function sqliteStore(ctx: BenchContext): BenchStore {
  const file = join(ctx.workDir, 'startup-keys.db');
  const remove = () => {
    for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
  };
  remove();
  return {
    env: { SQLITE_PATH: file },
    async fill(keys) {
      const db = new DatabaseSync(file);
      try {
        db.exec(`INSERT INTO keys (${KEY_COLUMNS})
          WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${keys - 1})
          SELECT 'bench-' || i, ${otherColumns()} FROM n, keys WHERE key_id = '${SEED}'`);
        // The driver opens a checkpointed file, as after any clean shutdown.
        db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
      } finally {
        db.close();
      }
    },
    async drop() {
      remove();
    },
  };
}

async function postgresStore(serverUrl: string): Promise<BenchStore> {
  const name = `hsm_bench_${randomBytes(6).toString('hex')}`;
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const query = async (target: string, sql: string) => {
    const client = new pg.Client({ connectionString: target, connectionTimeoutMillis: 5000 });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await query(serverUrl, `CREATE DATABASE ${name}`);
  return {
    env: { POSTGRES_URL: url.href },
    async fill(keys) {
      await query(url.href, `INSERT INTO keys (${KEY_COLUMNS})
        SELECT 'bench-' || g, ${otherColumns()} FROM keys, generate_series(1, ${keys - 1}) AS g WHERE key_id = '${SEED}';
        ANALYZE keys`);
    },
    async drop() {
      // FORCE (PostgreSQL 13+) ends any connection the stopped driver's pool left behind.
      await query(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => query(serverUrl, `DROP DATABASE IF EXISTS ${name}`));
    },
  };
}
