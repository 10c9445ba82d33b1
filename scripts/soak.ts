// `node scripts/soak.ts`: the fault suite's kill loop for as long as you like. Keygens and signs
// flow through the reference job server with short leases while `hsm-driver run` is SIGKILLed at
// random moments after it has logged in and started again; at the end a last driver drains the
// queue, and the run checks one key per keyId, every signature (node:crypto) against the key first
// reported, and the key store. Prints figures; exits 1 on any violation.
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startJobServer } from './job-server.ts';
import { killLoop, spawnKillable } from './soak/kill-loop.ts';
import { Ledger, serverSink, type KeyReport, type SoakAlgorithm } from './soak/ledger.ts';

const USAGE = `usage: node scripts/soak.ts [options]      (Node 24: node_modules/.bin/node, or npx node)
  --duration D            how long to feed keys and kill drivers: 90s, 10m, 2h [default: 10m]
  --keys-per-second N     new keyIds per second; each gets 1 keygen (every 4th: 2) and --signs-per-key signs [default: 8]
  --signs-per-key N       [default: 2]
  --kill-after MIN-MAX    ms after "running" at which each driver is SIGKILLed [default: 200-3000]
  --lease-seconds N       the job server's lease [default: 2]
  --algorithms LIST       comma-separated [default: ecdsa-secp256k1,ecdsa-p256,rsa-2048]; eddsa-ed25519 is
                          resident on SoftHSM, and a kill during its token-object write can break the token
  --target T              bundle (built afresh into the work dir), binary (dist/hsm-driver-linux-x64,
                          from npm run build) or both, alternating [default: bundle]
  --postgres-url URL      keys in PostgreSQL (a database of its own, or one the soak may add rows to)
                          instead of a SQLite file
  --seed N                replay the kill timings of an earlier run
  --keep                  keep the work directory (token, PKI, key file)
  --help                  this text`;

const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '10m' },
    'keys-per-second': { type: 'string', default: '8' },
    'signs-per-key': { type: 'string', default: '2' },
    'kill-after': { type: 'string', default: '200-3000' },
    'lease-seconds': { type: 'string', default: '2' },
    algorithms: { type: 'string', default: 'ecdsa-secp256k1,ecdsa-p256,rsa-2048' },
    target: { type: 'string', default: 'bundle' },
    'postgres-url': { type: 'string' },
    seed: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}

function fail(message: string): never {
  console.error(`soak: ${message} (see --help)`);
  process.exit(2);
}
function duration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)$/.exec(text);
  if (!m) fail(`bad --duration ${text}`);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h'];
}
function positive(name: string, text: string): number {
  const n = Number(text);
  if (!(n > 0)) fail(`--${name} must be more than 0, not ${text}`);
  return n;
}
const durationMs = duration(opts.duration);
const keysPerSecond = positive('keys-per-second', opts['keys-per-second']);
const signsPerKey = Math.floor(positive('signs-per-key', opts['signs-per-key']));
const leaseSeconds = positive('lease-seconds', opts['lease-seconds']);
const killAfter = /^(\d+)-(\d+)$/.exec(opts['kill-after']);
if (!killAfter || Number(killAfter[1]) > Number(killAfter[2])) fail(`bad --kill-after ${opts['kill-after']}`);
const KNOWN: SoakAlgorithm[] = ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519', 'rsa-2048'];
const algorithms = opts.algorithms.split(',').map((a) => {
  if (!KNOWN.includes(a.trim() as SoakAlgorithm)) fail(`unknown algorithm ${a} (${KNOWN.join(', ')})`);
  return a.trim() as SoakAlgorithm;
});
if (!['bundle', 'binary', 'both'].includes(opts.target)) fail(`bad --target ${opts.target}`);
let seed = opts.seed === undefined ? randomInt(2 ** 31) : Number(opts.seed);
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
};
const firstSeed = seed;

const root = join(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'hsm-driver-soak-'));
const progress = (line: string) => console.error(`soak: ${line}`);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function storedRows(postgresUrl: string | undefined, sqlitePath: string): Promise<{ integrity: string; rows: Map<string, { algorithm: string; publicKeyDer: string }> }> {
  const rows = new Map<string, { algorithm: string; publicKeyDer: string }>();
  if (postgresUrl) {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    try {
      const res = await client.query("SELECT key_id, algorithm, public_key_der FROM keys WHERE key_id LIKE 'soak.%'");
      for (const r of res.rows) rows.set(String(r.key_id), { algorithm: String(r.algorithm), publicKeyDer: (r.public_key_der as Buffer).toString('base64') });
    } finally {
      await client.end();
    }
    return { integrity: 'n/a (PostgreSQL)', rows };
  }
  const db = new DatabaseSync(sqlitePath, { readOnly: true });
  try {
    const integrity = db.prepare('PRAGMA integrity_check').all().map((r) => String(r.integrity_check)).join('; ');
    for (const r of db.prepare('SELECT key_id, algorithm, public_key_der FROM keys').all()) {
      rows.set(String(r.key_id), { algorithm: String(r.algorithm), publicKeyDer: Buffer.from(r.public_key_der as Uint8Array).toString('base64') });
    }
    return { integrity, rows };
  } finally {
    db.close();
  }
}

function rowProblems(rows: Map<string, { algorithm: string; publicKeyDer: string }>, reports: Map<string, KeyReport>): string[] {
  const problems: string[] = [];
  for (const [keyId, report] of reports) {
    const row = rows.get(keyId);
    if (!row) problems.push(`reported key ${keyId} has no row`);
    else if (row.publicKeyDer !== report.publicKeyDer || row.algorithm !== report.algorithm) problems.push(`row ${keyId} differs from the key reported`);
  }
  return problems;
}

let exitCode = 0;
try {
  progress(`work dir ${work}; seed ${firstSeed}`);
  const tokenEnvFile = execFileSync('bash', [join(root, 'scripts/dev-hsm.sh'), join(work, 'softhsm')], { env: { ...process.env, TOKEN_LABEL: 'hsm-driver-soak' }, encoding: 'utf8' }).trim();
  const token = Object.fromEntries([...readFileSync(tokenEnvFile, 'utf8').matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  const pki = join(work, 'pki');
  execFileSync('bash', [join(root, 'scripts/pki.sh'), pki, 'driver'], { stdio: 'pipe' });
  const bundle = join(work, 'dist', 'hsm-driver.cjs');
  if (opts.target !== 'binary') execFileSync(process.execPath, [join(root, 'build/bundle.mjs'), '--outdir', join(work, 'dist')], { stdio: 'pipe' });
  const binary = join(root, 'dist/hsm-driver-linux-x64');
  if (opts.target !== 'bundle') execFileSync(binary, ['version'], { stdio: 'pipe' }); // fails early without npm run build

  const server = await startJobServer({ cert: readFileSync(join(pki, 'server.pem')), key: readFileSync(join(pki, 'server.key')), ca: readFileSync(join(pki, 'api-ca.pem')), leaseSeconds });
  const sqlitePath = join(work, 'keys.db');
  const env: NodeJS.ProcessEnv = { ...process.env, ...token, RESIDENT_ALGORITHMS: 'eddsa-ed25519', LOG_LEVEL: 'info' };
  delete env.USER_PIN;
  const args = [
    'run', '--proxy-addr', server.proxyAddr, '--client-cert', join(pki, 'driver-chain.pem'), '--client-key', join(pki, 'driver.key'),
    '--ca-cert', join(pki, 'api-ca.pem'), '--poll-wait', '2', '--backoff-max', '1', '--health-interval', '1',
    ...(opts['postgres-url'] ? ['--postgres-url', opts['postgres-url']] : ['--sqlite-path', sqlitePath]),
  ];
  const ledger = new Ledger(serverSink(server), { prefix: `soak.${Date.now().toString(36)}.`, algorithms, signsPerKey, duplicateEvery: 4 });
  const useBinary = (life: number) => opts.target === 'binary' || (opts.target === 'both' && life % 2 === 1);
  let lastReport = Date.now();
  let outcome;
  try {
    outcome = await killLoop({
      ledger,
      random,
      start: (life) => (useBinary(life) ? spawnKillable(binary, args, env) : spawnKillable(process.execPath, [bundle, ...args], env)),
      killAfterMs: [Number(killAfter[1]), Number(killAfter[2])],
      keysPerSecond,
      durationMs,
      minKills: 1,
      holdsLease: () => server.stats().jobs.leased > 0,
      drainTimeoutMs: 300_000,
      log: (line) => {
        if (Date.now() - lastReport < 10_000) return;
        lastReport = Date.now();
        progress(line);
      },
    });
  } finally {
    await server.close();
  }
  const { problems, figures } = ledger.check();
  const stored = await storedRows(opts['postgres-url'], sqlitePath);
  problems.push(...rowProblems(stored.rows, ledger.reports()));
  if (!opts['postgres-url'] && stored.integrity !== 'ok') problems.push(`integrity_check: ${stored.integrity}`);
  if (!outcome.settled) problems.push('the last driver did not finish the queue in 5 minutes');
  if (outcome.finalExit !== 0) problems.push(`the last driver exited ${outcome.finalExit} after SIGTERM`);
  problems.push(...outcome.crashes);

  console.log(`soak ${opts.duration}, seed ${firstSeed}, ${algorithms.join(' ')}, lease ${leaseSeconds} s, target ${opts.target}, store ${opts['postgres-url'] ? 'postgres' : 'sqlite'}`);
  console.log(`  ran ${outcome.seconds} s; drivers killed ${outcome.kills} (${outcome.killsWithLeases} holding leases), crashed by themselves ${outcome.crashes.length}`);
  console.log(`  start → running: p50 ${percentile(outcome.startMs, 50)} ms, p95 ${percentile(outcome.startMs, 95)} ms, max ${Math.max(...outcome.startMs)} ms; life before the kill p50 ${percentile(outcome.lifeMs, 50)} ms`);
  console.log(`  keyIds ${figures.keys}; jobs ${figures.jobs} (keygen ${figures.keygenJobs}, sign ${figures.signJobs}), all ended: ${figures.completed === figures.jobs}`);
  console.log(`  re-delivered ${figures.redelivered}, highest attempt ${figures.maxAttempt}; answers ${figures.answers} (${figures.refusedAnswers} refused with 409)`);
  console.log(`  signatures verified ${figures.signaturesVerified}; rows ${stored.rows.size}, integrity_check ${stored.integrity}`);
  console.log(`  problems ${problems.length}${problems.length ? `:\n    ${problems.slice(0, 20).join('\n    ')}` : ''}`);
  if (problems.length > 0) exitCode = 1;
} catch (err) {
  console.error(`soak failed: ${(err as Error).stack ?? String(err)}`);
  exitCode = 1;
} finally {
  if (opts.keep) progress(`kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
process.exit(exitCode);
