// `keys verify` with the built driver on the test token and SQLite: every algorithm (a resident
// Ed25519 key too) signs and verifies; a row whose seal or public key was tampered with fails,
// named with its reason, audited, exit 1; --sample; progress as JSON lines, or a bar on a
// terminal; Ctrl-C stops between batches, exits non-zero and says how to resume, and resuming
// finishes the rest.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Hsm } from '../../../runtime/hsm/hsm.js';
import { openSqliteStore } from '../../../runtime/store/sqlite.js';
import { useCli } from '../../support/cli.js';
import { openTestHsm } from '../../support/hsm.js';
import { sqliteTamper } from '../../support/tamper.js';

const cli = useCli();

const KEYS = [
  ['v.k1', 'ecdsa-secp256k1'],
  ['v.p256', 'ecdsa-p256'],
  ['v.p384a', 'ecdsa-p384'],
  ['v.p384b', 'ecdsa-p384'],
  ['v.ed', 'eddsa-ed25519'],
  ['v.rsa', 'rsa-2048'],
] as const;

let store: string[];
beforeAll(() => {
  store = cli.sqlite();
  for (const [keyId, algorithm] of KEYS) expect(cli.job('keygen', { keyId, algorithm }, { store }).output).toMatchObject({ keyId });
}, 120_000);

const progressLines = (stderr: string) =>
  stderr
    .split('\n')
    .filter((l) => l.includes('"msg":"progress"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('keys verify', () => {
  it('signs with every key in the HSM and verifies each signature; progress as JSON lines off a terminal', () => {
    const res = cli.run(['keys', 'verify', ...store]);
    expect(res.status, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toContain('token "hsm-driver-test"');
    for (const algorithm of ['ecdsa-secp256k1', 'ecdsa-p256', 'eddsa-ed25519', 'rsa-2048']) expect(res.stdout).toContain(`algorithm ${algorithm}: 1 passed, 0 failed`);
    expect(res.stdout).toContain('algorithm ecdsa-p384: 2 passed, 0 failed');
    expect(res.stdout).toContain('master key "master": 6 passed, 0 failed');
    expect(res.stdout).toContain('keys verify: 6 keys checked: 6 passed, 0 failed; every key unwrapped, signed and verified');
    const progress = progressLines(res.stderr);
    expect(progress[0]).toMatchObject({ command: 'keys verify', done: 0, total: 6 });
    expect(progress.at(-1)).toMatchObject({ command: 'keys verify', done: 6, total: 6, failed: 0, etaSeconds: 0 });
    expect(progress.at(-1)!.ratePerSecond).toBeGreaterThan(0);
  });

  it('--sample checks that many random keys, or that fraction; a bad value is refused', () => {
    const two = cli.run(['keys', 'verify', ...store, '--sample', '2']);
    expect(two.status).toBe(0);
    expect(two.stdout).toContain('a random sample of 2 keys');
    expect(two.stdout).toContain('keys verify: 2 keys checked: 2 passed, 0 failed');
    expect(cli.run(['keys', 'verify', ...store, '--sample', '50%']).stdout).toContain('keys verify: 3 keys checked: 3 passed');
    const bad = cli.run(['keys', 'verify', ...store, '--sample', '1.5']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--sample must be');
  });

  it('draws a progress bar with rate and ETA on a terminal', () => {
    // `script` gives the driver a pseudo-terminal as stdin, stdout and stderr.
    const command = cli.argv(['keys', 'verify', ...store, '--log-level', 'warn']).map((a) => `'${a}'`).join(' ');
    const res = spawnSync('script', ['-qec', command, '/dev/null'], { env: cli.env(), encoding: 'utf8', timeout: 60_000 });
    expect(res.status, res.stdout).toBe(0);
    expect(res.stdout).toMatch(/keys verify \[[^\]]+\] 100% \| 6\/6 \| \d+\/s \| ETA \d+s/);
    expect(res.stdout).toContain('6 passed, 0 failed');
    expect(res.stdout).not.toContain('"msg":"progress"');
  });

  it('names each key that fails, with its reason, audits it and exits 1', async () => {
    const tampered = cli.sqlite();
    for (const [keyId, algorithm] of KEYS.slice(0, 4)) expect(cli.job('keygen', { keyId, algorithm }, { store: tampered }).output).toBeDefined();
    const tamper = sqliteTamper(tampered[1]!);
    // A row given another key's public key: its seal no longer matches.
    await tamper("UPDATE keys SET public_key_der = (SELECT public_key_der FROM keys WHERE key_id = 'v.p384a') WHERE key_id = 'v.k1'");
    // An unsealed row given another key's public key: only the signature check can tell.
    await tamper("UPDATE keys SET seal = NULL, public_key_der = (SELECT public_key_der FROM keys WHERE key_id = 'v.p384a') WHERE key_id = 'v.p384b'");

    const res = cli.run(['keys', 'verify', ...tampered]);
    expect(res.status).toBe(1);
    expect(res.stdout).toContain('FAILED v.k1: KEY_INTEGRITY: the row of v.k1 does not match its seal');
    expect(res.stdout).toContain('FAILED v.p384b: KEY_INTEGRITY: a test signature by v.p384b did not verify against its stored public key');
    expect(res.stdout).toContain('algorithm ecdsa-p384: 1 passed, 1 failed');
    expect(res.stdout).toContain('keys verify: 4 keys checked: 2 passed, 2 failed');
    const audit = cli.run(['audit', 'export', ...tampered]).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.filter((r) => r.kind === 'keys-verify').map((r) => [r.keyId, r.outcome, r.code]).sort()).toEqual([
      ['v.k1', 'error', 'KEY_INTEGRITY'],
      ['v.p384b', 'error', 'KEY_INTEGRITY'],
    ]);
  });
});

describe('keys verify stopped by Ctrl-C', () => {
  // secp256k1, the slowest unwrap and sign.
  const COUNT = 600;
  let many: string[];
  let hsm: Hsm;
  beforeAll(async () => {
    many = cli.sqlite();
    hsm = await openTestHsm();
    const db = await openSqliteStore(many[1]!);
    try {
      for (let i = 0; i < COUNT; i++) {
        const keyId = `many.${String(i).padStart(4, '0')}`;
        await db.insertIfAbsent({ keyId, algorithm: 'ecdsa-secp256k1', ...(await hsm.generate('ecdsa-secp256k1', keyId)), createdAt: new Date() });
      }
    } finally {
      await db.close();
    }
  }, 120_000);
  afterAll(async () => {
    await hsm?.close();
  });

  it('stops between batches, exits 130 and says how to resume; resuming checks the rest', async () => {
    // One session: one key at a time, so the batches left after the first take a while.
    const run = cli.start(['keys', 'verify', ...many, '--sessions', '1']);
    await run.waitForStderr((l) => l.includes('"msg":"progress"') && /"done":[1-9]/.test(l));
    run.proc.kill('SIGINT');
    const res = await run.exited;
    expect(res.status).toBe(130);
    const stopped = /keys verify: stopped after (\d+) of 600 keys; resume with: hsm-driver keys verify --after (many\.\d{4}) \(and the same options\)/.exec(res.stdout);
    expect(stopped, res.stdout).not.toBeNull();
    const done = Number(stopped![1]);
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThan(COUNT);
    // Between batches: whole batches done, and the resume point is the last key of the last one.
    expect(done % 100).toBe(0);
    expect(stopped![2]).toBe(`many.${String(done - 1).padStart(4, '0')}`);
    expect(res.stdout).toContain(`keys verify: ${done} keys checked: ${done} passed, 0 failed`);

    const rest = cli.run(['keys', 'verify', ...many, '--after', stopped![2]!]);
    expect(rest.status).toBe(0);
    expect(rest.stdout).toContain(`keys verify: ${COUNT - done} keys checked: ${COUNT - done} passed, 0 failed`);
  });
});
