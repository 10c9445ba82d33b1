// One-shot demo on the embedded defaults: a dev SoftHSM2 token, a SQLite file, the built bundle.
// For every algorithm: keygen, sign, verify the signature with node's OpenSSL, print a table.
// Run with `npm run demo:oneshot` (Node 24 runs this TypeScript file directly).
import { execFileSync, spawnSync } from 'node:child_process';
import { createPublicKey, verify, constants } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const devDir = join(root, '.dev', 'softhsm');
const envFile = execFileSync('bash', [join(root, 'scripts/dev-hsm.sh'), devDir], { encoding: 'utf8' }).trim();
const devEnv = Object.fromEntries([...readFileSync(envFile, 'utf8').matchAll(/^export (\w+)=(.*)$/gm)].map((m) => [m[1], m[2]]));
if (!existsSync(join(root, 'dist/hsm-driver.cjs'))) execFileSync(process.execPath, [join(root, 'build/bundle.mjs')], { stdio: 'inherit' });

const sqlitePath = join(root, '.dev', 'demo-keys.db');
rmSync(sqlitePath, { force: true });
const env = { ...process.env, ...devEnv, SQLITE_PATH: sqlitePath, RESIDENT_ALGORITHMS: 'eddsa-ed25519', LOG_LEVEL: 'warn' };

function driver(kind: string, input: object): Record<string, unknown> {
  const run = spawnSync(process.execPath, [join(root, 'dist/hsm-driver.cjs'), kind, '--input', JSON.stringify(input)], { env, encoding: 'utf8' });
  const answer = JSON.parse(run.stdout) as { output?: Record<string, unknown>; error?: unknown };
  if (!answer.output) throw new Error(`${kind} failed: ${JSON.stringify(answer.error)}`);
  return answer.output;
}

const message = Buffer.from('hsm-driver demo: pay 1 BTC to alice');
const algorithms = ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519', 'rsa-2048', 'rsa-3072', 'rsa-4096'];
let failures = 0;
console.log('algorithm        signature (first 24 hex)   verified');
for (const algorithm of algorithms) {
  const keyId = `demo.${algorithm}`;
  const key = driver('keygen', { keyId, algorithm });
  const publicKey = createPublicKey({ key: Buffer.from(key.publicKeyDer as string, 'base64'), format: 'der', type: 'spki' });
  const data = message.toString('hex');
  let ok: boolean;
  let signature: string;
  if (algorithm.startsWith('ecdsa')) {
    const hash = algorithm === 'ecdsa-p384' ? 'sha384' : 'sha256';
    const out = driver('sign', { keyId, data, encoding: 'message', hash });
    signature = out.der as string;
    ok = verify(hash, message, { key: publicKey, dsaEncoding: 'der' }, Buffer.from(signature, 'hex'));
  } else if (algorithm === 'eddsa-ed25519') {
    signature = driver('sign', { keyId, data, encoding: 'message' }).signature as string;
    ok = verify(null, message, publicKey, Buffer.from(signature, 'hex'));
  } else {
    signature = driver('sign', { keyId, data, encoding: 'message', hash: 'sha256' }).signature as string;
    ok = verify('sha256', message, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, Buffer.from(signature, 'hex'));
  }
  if (!ok) failures++;
  console.log(`${algorithm.padEnd(16)} ${signature.slice(0, 24).padEnd(26)} ${ok ? 'yes' : 'NO'}`);
}
const health = driver('health', {});
console.log(`health: ok=${health.ok} keys=${(health.database as { keys: number }).keys} token=${(health.hsm as { tokenLabel: string }).tokenLabel}`);
process.exitCode = failures === 0 && health.ok === true ? 0 : 1;
