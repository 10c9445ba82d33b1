// The whole system on the embedded defaults, end to end: a dev SoftHSM2 token with a master
// key, SQLite, the runbook's PKI, the reference job server and `hsm-driver run` as separate
// processes. Enqueues a keygen per algorithm, then a sign per key, verifies every signature
// with node's OpenSSL against the returned public key, prints a table, stops the driver with
// SIGTERM and exits 0 only if everything verified. Run: `npm run demo` (Node 24 runs it as is).
// `npm run bench` (demo.ts --bench N) then pushes N secp256k1 sign jobs through the same system
// and prints throughput and per-job latency (lease to answer, as the server saw them).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { constants, createPublicKey, verify } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';

const root = join(import.meta.dirname, '..');
const dev = join(root, '.dev');
const node = process.execPath;

function sh(script: string, ...args: string[]): string {
  return execFileSync('bash', [join(root, 'scripts', script), ...args], { encoding: 'utf8' }).trim();
}

/** Starts a process and resolves with it once a line on stdout/stderr matches. */
async function startUntil(args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<{ proc: ChildProcess; match: RegExpMatchArray; output: () => string }> {
  const proc = spawn(node, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = output.match(ready);
      if (m) resolve(m);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`${args[0]} exited ${code} before it was ready:\n${output}`)));
    setTimeout(() => reject(new Error(`${args[0]} not ready after 20 s:\n${output}`)), 20_000).unref();
  });
  return { proc, match, output: () => output };
}

async function admin(url: string, method: string, body?: unknown): Promise<any> {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

async function runJobs(adminUrl: string, jobs: Array<{ kind: string; input: unknown }>): Promise<any[]> {
  const before = (await admin(`${adminUrl}/admin/stats`, 'GET')).jobs.completed as number;
  const { ids } = (await admin(`${adminUrl}/admin/jobs`, 'POST', jobs)) as { ids: string[] };
  const deadline = Date.now() + 120_000;
  // Wait on the server's counters (one cheap call) rather than asking after every job.
  while ((await admin(`${adminUrl}/admin/stats`, 'GET')).jobs.completed < before + ids.length) {
    if (Date.now() > deadline) throw new Error('jobs not completed in 120 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const all = new Map(((await admin(`${adminUrl}/admin/jobs`, 'GET')) as any[]).map((j) => [j.id, j]));
  return ids.map((id) => all.get(id));
}

const ALGORITHMS = ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519', 'rsa-2048', 'rsa-3072', 'rsa-4096'];
const message = Buffer.from('hsm-driver demo: pay 1 BTC to alice');

function signInput(algorithm: string, keyId: string) {
  const data = message.toString('hex');
  if (algorithm === 'eddsa-ed25519') return { keyId, data, encoding: 'message' };
  return { keyId, data, encoding: 'message', hash: algorithm === 'ecdsa-p384' ? 'sha384' : 'sha256' };
}

function verified(algorithm: string, publicKeyDer: string, out: Record<string, string>): boolean {
  const key = createPublicKey({ key: Buffer.from(publicKeyDer, 'base64'), format: 'der', type: 'spki' });
  if (algorithm === 'eddsa-ed25519') return verify(null, message, key, Buffer.from(out.signature!, 'hex'));
  if (algorithm.startsWith('ecdsa')) return verify(algorithm === 'ecdsa-p384' ? 'sha384' : 'sha256', message, { key, dsaEncoding: 'der' }, Buffer.from(out.der!, 'hex'));
  return verify('sha256', message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, Buffer.from(out.signature!, 'hex'));
}

const token = Object.fromEntries([...readFileSync(sh('dev-hsm.sh', join(dev, 'softhsm')), 'utf8').matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
const pki = join(dev, 'pki');
sh('pki.sh', pki, 'driver');
if (!existsSync(join(root, 'dist/hsm-driver.cjs'))) execFileSync(node, [join(root, 'build/bundle.mjs')], { stdio: 'inherit' });
const sqlitePath = join(dev, 'demo-keys.db');
for (const suffix of ['', '-wal', '-shm']) rmSync(sqlitePath + suffix, { force: true });

const server = await startUntil(
  [join(root, 'scripts/job-server.ts'), '--cert', join(pki, 'server.pem'), '--key', join(pki, 'server.key'), '--ca', join(pki, 'api-ca.pem'), '--admin-port', '0'],
  process.env,
  /listening on https:\/\/([\d.]+:\d+)[\s\S]*admin on (http:\/\/[\d.]+:\d+)/,
);
const [, proxyAddr, adminUrl] = server.match as unknown as [string, string, string];
const driverEnv = { ...process.env, ...token, SQLITE_PATH: sqlitePath, RESIDENT_ALGORITHMS: 'eddsa-ed25519', LOG_LEVEL: 'info' };
const driver = await startUntil(
  [join(root, 'dist/hsm-driver.cjs'), 'run', '--proxy-addr', proxyAddr, '--client-cert', join(pki, 'driver-chain.pem'), '--client-key', join(pki, 'driver.key'), '--ca-cert', join(pki, 'api-ca.pem')],
  driverEnv,
  /"state":"running"/,
);

let failures = 0;
try {
  const keys = await runJobs(adminUrl, ALGORITHMS.map((algorithm) => ({ kind: 'keygen', input: { keyId: `demo.${algorithm}`, algorithm } })));
  const signs = await runJobs(adminUrl, ALGORITHMS.map((algorithm) => ({ kind: 'sign', input: signInput(algorithm, `demo.${algorithm}`) })));
  const [health] = await runJobs(adminUrl, [{ kind: 'health', input: {} }]);
  console.log('algorithm        mode       public key (first 20 hex)  signature (first 20 hex)  verified');
  ALGORITHMS.forEach((algorithm, i) => {
    const key = keys[i].result as Record<string, string>;
    const sig = signs[i].result as Record<string, string> | undefined;
    const ok = sig !== undefined && verified(algorithm, key.publicKeyDer!, sig);
    if (!ok) failures++;
    const mode = (health.result.hsm.algorithms as Record<string, string>)[algorithm] ?? '?';
    const pub = (key.publicKey ?? Buffer.from(key.publicKeyDer!, 'base64').toString('hex').slice(-40)).slice(0, 20);
    console.log(`${algorithm.padEnd(16)} ${mode.padEnd(10)} ${pub.padEnd(26)} ${(sig?.der ?? sig?.signature ?? JSON.stringify(signs[i].error)).slice(0, 20).padEnd(25)} ${ok ? 'yes' : 'NO'}`);
  });
  console.log(`health: ok=${health.result.ok} hsm=${health.result.hsm.tokenLabel} database=${health.result.database.kind} keys=${health.result.database.keys}`);
  if (health.result.ok !== true) failures++;
  const bench = process.argv.indexOf('--bench');
  if (bench > 0) await benchmark(Number(process.argv[bench + 1] ?? 2000));
} finally {
  driver.proc.kill('SIGTERM');
  const [code] = (await once(driver.proc, 'exit')) as [number | null];
  console.log(`driver stopped with SIGTERM: exit ${code}`);
  if (code !== 0) {
    failures++;
    console.error(driver.output());
  }
  server.proc.kill('SIGTERM');
}
process.exitCode = failures === 0 ? 0 : 1;

/** Sign throughput through the whole system: API, mTLS, driver, unwrap + sign + destroy, verify. */
async function benchmark(count: number): Promise<void> {
  const digest = (i: number) => i.toString(16).padStart(64, '0');
  const started = performance.now();
  const jobs = await runJobs(
    adminUrl,
    Array.from({ length: count }, (_, i) => ({ kind: 'sign', input: { keyId: 'demo.ecdsa-secp256k1', data: digest(i + 1), encoding: 'digest' } })),
  );
  const seconds = (performance.now() - started) / 1000;
  const failed = jobs.filter((j) => j.result === undefined).length;
  const latency = jobs.map((j) => Date.parse(j.answers[0].at) - Date.parse(j.leases[0].at)).sort((a, b) => a - b);
  const pct = (p: number) => latency[Math.min(latency.length - 1, Math.floor((p / 100) * latency.length))];
  const rss = Number(readFileSync(`/proc/${driver.proc.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
  console.log(`bench: ${count} secp256k1 signs in ${seconds.toFixed(2)} s = ${(count / seconds).toFixed(0)} jobs/s; lease→answer p50 ${pct(50)} ms, p99 ${pct(99)} ms; failed ${failed}; driver RSS ${rss.toFixed(0)} MiB`);
  if (failed > 0) failures++;
}
