// The whole system on the embedded defaults, end to end: a dev SoftHSM2 token with a master
// key, SQLite, the runbook's PKI, the reference job server and `hsm-driver run` as separate
// processes. Enqueues a keygen per algorithm, then a sign per key, verifies every signature
// with node's OpenSSL against the returned public key, prints a table, stops the driver with
// SIGTERM and exits 0 only if everything verified. Run: `npm run demo` (Node 24 runs it as is).
import { constants, createPublicKey, verify } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { dev, devSetup, runJobs, startDriver, startJobServer, stop } from './bench/system.ts';

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

const { token, pki } = devSetup();
const sqlitePath = join(dev, 'demo-keys.db');
for (const suffix of ['', '-wal', '-shm']) rmSync(sqlitePath + suffix, { force: true });

const server = await startJobServer(pki);
const { adminUrl } = server;
const driver = await startDriver(server, pki, { ...process.env, ...token, SQLITE_PATH: sqlitePath, RESIDENT_ALGORITHMS: 'eddsa-ed25519', LOG_LEVEL: 'info' });

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
} finally {
  const code = await stop(driver);
  console.log(`driver stopped with SIGTERM: exit ${code}`);
  if (code !== 0) {
    failures++;
    console.error(driver.output());
  }
  await stop(server);
}
process.exitCode = failures === 0 ? 0 : 1;
