// `npm run bench`: the token's own limit (raw PKCS#11) and the driver end to end (job server, mTLS, `hsm-driver run`) side by side, plus start-up time and RSS with 100,000 stored keys; prints a table and writes one JSON file.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DriverRefused, JobFailed, round, runDriver, type BenchContext } from './bench/e2e.ts';
import { markdownTable, type Pair } from './bench/readme-table.ts';
import { runRaw, type RawAlgorithm, type RawOp, type RawResult } from './bench/raw.ts';
import { measureStartup, type StartupResult } from './bench/startup.ts';
import { dev, devSetup } from './bench/system.ts';

const USAGE = `usage: npm run bench -- [options]
  --out FILE                     JSON output [default: .dev/bench.json]
  --quick                        smoke check: ~1 s per measurement, one algorithm, one start-up per store
  --only LIST                    algorithms, comma-separated: secp256k1,p256,ed25519 [default: all]
  --sessions-max N               the "N sessions" runs [default: os.availableParallelism()]
  --concurrency-per-session K    driver --concurrency = K × sessions [default: 4]
  --no-cache                     skip the sign runs with the key cache on (--key-cache-size 64 --key-cache-ttl 60)
  --no-startup                   skip start-up time and RSS with 100,000 keys
  --no-audit-off                 skip the sign runs with --audit-trail off (what the audit trail costs)
Environment: PG_URL (default postgres://postgres@127.0.0.1:5432/postgres) for the PostgreSQL start-up.`;

const NAMES: Record<string, RawAlgorithm> = { secp256k1: 'ecdsa-secp256k1', p256: 'ecdsa-p256', ed25519: 'eddsa-ed25519' };
const CACHE_ARGS = ['--key-cache-size', '64', '--key-cache-ttl', '60'];
const STORED_KEYS = 100_000;

const { values: opts } = parseArgs({
  options: {
    out: { type: 'string', default: join(dev, 'bench.json') },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'sessions-max': { type: 'string' },
    'concurrency-per-session': { type: 'string', default: '4' },
    'no-cache': { type: 'boolean', default: false },
    'no-startup': { type: 'boolean', default: false },
    'no-audit-off': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const positive = (name: string, value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not ${value}`);
  return n;
};
const maxSessions = positive('sessions-max', opts['sessions-max'] ?? String(os.availableParallelism()));
const perSession = positive('concurrency-per-session', opts['concurrency-per-session']);
let algorithms = (opts.only ?? Object.keys(NAMES).join(',')).split(',').map((a) => {
  const name = NAMES[a.trim()] ?? Object.values(NAMES).find((n) => n === a.trim());
  if (!name) throw new Error(`--only: unknown algorithm ${a} (secp256k1, p256, ed25519)`);
  return name;
});
if (opts.quick) algorithms = algorithms.slice(0, 1);
const sessionCounts = [...new Set([1, maxSessions])];
// Full runs: 3 s per raw window, jobs for ~3 s at the raw rate (at least 500), no run longer than
// ~10 s at the driver's warm-up rate. --quick: about 1 s of everything.
const plan = opts.quick
  ? { rawSeconds: 1, targetSeconds: 1, capSeconds: 2, minJobs: 200, warmup: [50, 300], startupRuns: 1 }
  : { rawSeconds: 3, targetSeconds: 3, capSeconds: 10, minJobs: 500, warmup: [100, 1000], startupRuns: 3 };
const outFile = resolve(opts.out);
const pgUrl = process.env.PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const progress = (line: string) => console.error(`bench: ${line}`);
const notes: string[] = [];
const note = (line: string) => {
  notes.push(line);
  progress(`note: ${line}`);
};

function softhsmVersion(): string | undefined {
  try {
    return execFileSync('softhsm2-util', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

// A token of its own, made afresh each run: the driver's resident Ed25519 keygens leave token
// objects behind (it has no delete), and SoftHSM slows down as they pile up.
const workDir = join(dev, 'bench-work');
const tokenDir = join(workDir, 'softhsm');
rmSync(workDir, { recursive: true, force: true });
mkdirSync(workDir, { recursive: true });

const raw: RawResult[] = [];
const pairs: Pair[] = [];
const runs: Array<Record<string, unknown>> = [];
const startup: Array<StartupResult['startup']> = [];
const rss: Array<StartupResult['rss']> = [];

try {
  const { token, pki } = devSetup(tokenDir);
  // SoftHSM reads its configuration at C_Initialize, in this process (raw.ts) as in the driver.
  process.env.SOFTHSM2_CONF = token.SOFTHSM2_CONF;
  const ctx: BenchContext = { token, pki, workDir };
  const pin = readFileSync(token.USER_PIN_FILE!, 'utf8').trim();

  async function measureRaw(algorithm: RawAlgorithm, op: RawOp, sessions: number): Promise<RawResult> {
    const r = await runRaw({ module: token.PKCS11_MODULE!, tokenLabel: token.TOKEN_LABEL!, pin, masterKeyLabel: token.MASTER_KEY_LABEL!, algorithm, op, sessions, seconds: plan.rawSeconds });
    if (r.leftoverObjects > 0) note(`raw ${algorithm} ${op} S=${sessions} left ${r.leftoverObjects} object(s) on the token`);
    progress(`raw    ${algorithm} ${r.op} S=${sessions}: ${r.opsPerSec} ops/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`);
    raw.push(r);
    return r;
  }

  // Start-up first: it must not pay for the token objects the Ed25519 keygen runs leave behind.
  if (!opts['no-startup']) {
    for (const store of ['sqlite', 'postgres'] as const) {
      try {
        const r = await measureStartup(ctx, { store, keys: STORED_KEYS, runs: plan.startupRuns, signJobs: 1000, sessions: maxSessions, concurrency: perSession * maxSessions, pgUrl });
        startup.push(r.startup);
        rss.push(r.rss);
        progress(`start  ${store} ${STORED_KEYS} keys: first poll ${r.startup.firstPollMs} ms (${r.startup.runsMs.join(', ')}), RSS ${r.rss.afterStartMiB} → ${r.rss.afterSignsMiB} MiB after 1000 signs`);
      } catch (err) {
        // Without a PostgreSQL server the rest of the bench still means something.
        if (store === 'postgres' && !(err instanceof JobFailed) && /ECONNREFUSED|ENOTFOUND|password|does not exist|timeout/i.test(String((err as Error).message))) {
          note(`postgres start-up skipped: ${(err as Error).message.split('\n')[0]} (set PG_URL)`);
        } else throw err;
      }
    }
  }

  let cacheRefused = false;
  for (const algorithm of algorithms) {
    // Ed25519 is resident on SoftHSM: the driver signs with a token object, so its baseline is a persistent handle.
    const signOp: RawOp = algorithm === 'eddsa-ed25519' ? 'persistent-sign' : 'unwrap-sign';
    const signRaw = new Map<number, RawResult>();
    const keygenRaw = new Map<number, RawResult>();
    for (const s of sessionCounts) signRaw.set(s, await measureRaw(algorithm, signOp, s));
    if (signOp !== 'persistent-sign') await measureRaw(algorithm, 'persistent-sign', 1);
    for (const s of sessionCounts) keygenRaw.set(s, await measureRaw(algorithm, 'keygen-wrap', s));

    const variants: Array<{ job: 'sign' | 'keygen'; cache: boolean; audit: boolean }> = [{ job: 'sign', cache: false, audit: true }];
    // What the audit trail costs: the first algorithm's signs once more without it.
    if (algorithm === algorithms[0] && !opts['no-audit-off']) variants.push({ job: 'sign', cache: false, audit: false });
    if (!opts['no-cache']) variants.push({ job: 'sign', cache: true, audit: true });
    variants.push({ job: 'keygen', cache: false, audit: true });
    for (const { job, cache, audit } of variants) {
      for (const sessions of sessionCounts) {
        if (cache && cacheRefused) continue;
        const base = (job === 'sign' ? signRaw : keygenRaw).get(sessions)!;
        const jobs = Math.max(plan.minJobs, Math.round(base.opsPerSec * plan.targetSeconds));
        const concurrency = perSession * sessions;
        let r;
        try {
          r = await runDriver(ctx, {
            algorithm, job, sessions, concurrency, extraArgs: [...(cache ? CACHE_ARGS : []), ...(audit ? [] : ['--audit-trail', 'off'])], jobs,
            minJobs: plan.minJobs, capSeconds: plan.capSeconds,
            warmupJobs: Math.min(plan.warmup[1]!, Math.max(plan.warmup[0]!, Math.round(jobs / 10))),
          });
        } catch (err) {
          if (err instanceof DriverRefused && /key-cache/.test(err.message)) {
            cacheRefused = true;
            note(`key-cache rows skipped: the driver refuses ${CACHE_ARGS.join(' ')} (${err.message.match(/Unknown argument[^\n]*/)?.[0] ?? 'exited at start'})`);
            continue;
          }
          throw err;
        }
        const ratio = round(r.opsPerSec / base.opsPerSec, 3);
        const cpuCeilingRatio = round(Math.min(1, (os.availableParallelism() * 1000) / (r.driverCpuMsPerJob + r.serverCpuMsPerJob) / base.opsPerSec), 3);
        progress(`driver ${algorithm} ${job}${cache ? ' (cache)' : ''}${audit ? '' : ' (audit off)'} S=${sessions} C=${concurrency}: ${r.opsPerSec} ops/s over ${r.jobs} jobs, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms; ratio ${ratio}; CPU/job driver ${r.driverCpuMsPerJob} ms + server ${r.serverCpuMsPerJob} ms → ceiling ${cpuCeilingRatio}`);
        if (r.jobs < jobs) progress(`       (${jobs} jobs at the raw rate would take ~${Math.round(jobs / r.opsPerSec)} s: cut to ${r.jobs})`);
        pairs.push({ algorithm, job, sessions, cache, audit, concurrency, rawOpsPerSec: base.opsPerSec, driverOpsPerSec: r.opsPerSec, ratio, p50Ms: r.p50Ms, p99Ms: r.p99Ms, rawP50Ms: base.p50Ms, rawP99Ms: base.p99Ms, driverCpuMsPerJob: r.driverCpuMsPerJob, serverCpuMsPerJob: r.serverCpuMsPerJob, cpuCeilingRatio });
        runs.push({ algorithm, job, sessions, cache, concurrency, rawOp: base.op, plannedJobs: jobs, jobs: r.jobs, seconds: r.seconds, driverRssMiB: r.rssMiB });
      }
    }
    if (algorithm === 'eddsa-ed25519') {
      note('eddsa-ed25519 keygen: the raw baseline makes session objects (SoftHSM cannot wrap Ed25519), the driver writes resident token objects one at a time');
    }
  }

  const cpu = os.cpus()[0];
  const report = {
    machine: { cpus: os.availableParallelism(), model: cpu?.model.trim() ?? 'unknown', memGiB: round(os.totalmem() / 2 ** 30, 1), node: process.version, softhsm: softhsmVersion() },
    date: new Date().toISOString(),
    options: { quick: opts.quick, algorithms, sessionsMax: maxSessions, concurrencyPerSession: perSession, withCache: !opts['no-cache'], ...plan },
    pairs,
    startup,
    rss,
    raw,
    runs,
    notes,
  };
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);

  console.log(markdownTable(report));
  if (raw.some((r) => r.op === 'persistent-sign')) {
    console.log('\nraw sign with a persistent handle (1 session): ' + raw.filter((r) => r.op === 'persistent-sign' && r.sessions === 1).map((r) => `${r.algorithm} ${Math.round(r.opsPerSec)} ops/s`).join(', '));
  }
  for (const s of startup) {
    const m = rss.find((r) => r.store === s.store)!;
    console.log(`start-up ${s.store.padEnd(8)} ${s.keys} keys: first poll ${s.firstPollMs} ms (median of ${s.runsMs.length}); RSS ${m.afterStartMiB} MiB after start, ${m.afterSignsMiB} MiB after 1000 signs`);
  }
  for (const n of notes) console.log(`note: ${n}`);
  console.log(`\nwrote ${outFile}`);
} catch (err) {
  console.error(`bench failed: ${err instanceof JobFailed ? err.message : ((err as Error).stack ?? String(err))}`);
  process.exitCode = 1;
} finally {
  rmSync(workDir, { recursive: true, force: true });
}
