// The DR drill end to end, with the built driver and real SoftHSM tokens of this file's own: keys
// made on token A go to SQLite, are exported, imported into PostgreSQL and proven usable by
// `keys verify` on token B, which holds only copies of A's master and integrity keys; and back
// from PostgreSQL into SQLite. Token C has the same master key but its own integrity key:
// A's seals mean nothing there, so import refuses them unless --reseal. Token D has another
// master key: the drill fails there, key by key.
import { statSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useCli } from '../../support/cli.js';
import { checksumOf, dumpStore, keyValue, readExport, rewriteExport } from '../../support/keys-backup.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { ownToken } from '../../support/token.js';

const cli = useCli();
const pgB = usePostgresDatabase();
const pgC = usePostgresDatabase();
const pgD = usePostgresDatabase();
const dir = mkdtempSync(join(tmpdir(), 'keys-dr-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KEYS = [
  ['dr.k1', 'ecdsa-secp256k1'],
  ['dr.k2', 'ecdsa-secp256k1'],
  ['dr.p256', 'ecdsa-p256'],
  ['dr.p384', 'ecdsa-p384'],
  ['dr.rsa', 'rsa-2048'],
] as const;

let tokenA: Record<string, string>;
let tokenB: Record<string, string>;
let tokenC: Record<string, string>;
let tokenD: Record<string, string>;
let sqliteA: string[];
let exported: string;

beforeAll(() => {
  const master = keyValue();
  const integrity = keyValue();
  // Tokens made at a ceremony that imports known key values: B holds copies of A's keys.
  const token = (name: string, keys: { MASTER_KEY_VALUE: string; INTEGRITY_KEY_VALUE: string }) => ownToken(join(dir, name), `dr-${name}`, keys);
  tokenA = token('a', { MASTER_KEY_VALUE: master, INTEGRITY_KEY_VALUE: integrity });
  tokenB = token('b', { MASTER_KEY_VALUE: master, INTEGRITY_KEY_VALUE: integrity });
  tokenC = token('c', { MASTER_KEY_VALUE: master, INTEGRITY_KEY_VALUE: keyValue() });
  tokenD = token('d', { MASTER_KEY_VALUE: keyValue(), INTEGRITY_KEY_VALUE: integrity });
  sqliteA = cli.sqlite();
  for (const [keyId, algorithm] of KEYS) expect(cli.job('keygen', { keyId, algorithm }, { store: sqliteA, env: tokenA }).output).toMatchObject({ keyId });
  exported = cli.path('keys.jsonl');
  const res = cli.run(['keys', 'export', ...sqliteA, '--out', exported], { env: tokenA });
  expect(res.status, res.stderr).toBe(0);
  expect(res.stdout).toContain(`keys export: 5 rows to ${exported} (5 sealed, 0 unsealed; 5 wrapped, 0 resident)`);
}, 120_000);

describe('keys export', () => {
  it('writes a header, public rows and a trailing checksum, mode 0600, and never overwrites', () => {
    const file = readExport(exported);
    expect(file.header).toMatchObject({ format: 'hsm-driver-keys', version: 1, store: 'sqlite', masterKeys: ['master'], mechanisms: ['aes-key-wrap-pad'] });
    expect(file.header.counts).toMatchObject({ rows: 5, sealed: 5, unsealed: 0, byAlgorithm: { 'ecdsa-secp256k1': 2, 'ecdsa-p256': 1, 'ecdsa-p384': 1, 'rsa-2048': 1 } });
    expect(file.rows.map((r) => r.keyId)).toEqual(KEYS.map(([k]) => k).sort());
    for (const row of file.rows) {
      expect(Object.keys(row).sort()).toEqual(['algorithm', 'createdAt', 'keyId', 'masterKeyLabel', 'publicKeyDer', 'residentId', 'seal', 'wrapMechanism', 'wrappedKey']);
      expect(Buffer.from(row.seal, 'base64')).toHaveLength(32);
    }
    const lines = readFileSync(exported, 'utf8').split('\n').slice(0, -2);
    expect(file.trailer).toEqual({ rows: 5, checksum: checksumOf(lines) });
    expect(statSync(exported).mode & 0o777).toBe(0o600);

    const before = readFileSync(exported);
    const again = cli.run(['keys', 'export', ...sqliteA, '--out', exported], { env: tokenA });
    expect(again.status).toBe(2);
    expect(again.stderr).toContain('never overwrites');
    expect(readFileSync(exported).equals(before)).toBe(true);
  });
});

describe('SQLite on token A → PostgreSQL on token B (a copy of the master key)', () => {
  it('imports every row, keys verify passes on B, a second import skips them all', async () => {
    const store = ['--postgres-url', pgB()];
    const imported = cli.run(['keys', 'import', exported, ...store], { env: tokenB });
    expect(imported.status, imported.stdout + imported.stderr).toBe(0);
    expect(imported.stdout).toContain('keys import: 5 rows imported (0 resealed here, 0 unsealed), 0 identical skipped');

    const verified = cli.run(['keys', 'verify', ...store], { env: tokenB });
    expect(verified.status, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toContain('token "dr-b"');
    expect(verified.stdout).toContain('postgres store; 5 keys');
    expect(verified.stdout).toContain('algorithm ecdsa-secp256k1: 2 passed, 0 failed');
    expect(verified.stdout).toContain('algorithm rsa-2048: 1 passed, 0 failed');
    expect(verified.stdout).toContain('master key "master": 5 passed, 0 failed');
    expect(verified.stdout).toContain('keys verify: 5 keys checked: 5 passed, 0 failed');
    // A sign job on B with A's key, under the strictest setting, verified against A's public key by the driver.
    const signed = cli.job('sign', { keyId: 'dr.k1', data: '11'.repeat(32), encoding: 'digest' }, { store: [...store, '--require-sealed-rows'], env: tokenB });
    expect(signed.output?.signature).toMatch(/^[0-9a-f]{128}$/);

    const before = await dumpStore('postgres', pgB());
    const again = cli.run(['keys', 'import', exported, ...store], { env: tokenB });
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('keys import: 0 rows imported (0 resealed here, 0 unsealed), 5 identical skipped');
    expect(await dumpStore('postgres', pgB())).toBe(before);

    const audit = cli.run(['audit', 'export', ...store], { env: tokenB }).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.filter((r) => r.kind === 'keys-import').map((r) => r.keyId).sort()).toEqual(KEYS.map(([k]) => k).sort());
    expect(cli.run(['audit', 'verify', ...store], { env: tokenB }).status).toBe(0);
  });

  it('and back: exported from PostgreSQL, imported into SQLite, verified on B', () => {
    const fromPg = cli.path('from-pg.jsonl');
    expect(cli.run(['keys', 'export', '--postgres-url', pgB(), '--out', fromPg], { env: tokenB }).status).toBe(0);
    expect(readExport(fromPg).header).toMatchObject({ store: 'postgres', counts: { rows: 5 } });
    const sqlite = cli.sqlite();
    expect(cli.run(['keys', 'import', fromPg, ...sqlite], { env: tokenB }).stdout).toContain('5 rows imported');
    const verified = cli.run(['keys', 'verify', ...sqlite], { env: tokenB });
    expect(verified.status).toBe(0);
    expect(verified.stdout).toContain('keys verify: 5 keys checked: 5 passed, 0 failed');
  });
});

describe('token C: the same master key, its own integrity key', () => {
  it('refuses rows sealed elsewhere, writing nothing; --reseal seals them here after a test sign', async () => {
    const store = ['--postgres-url', pgC()];
    const refused = cli.run(['keys', 'import', exported, ...store], { env: tokenC });
    expect(refused.status).toBe(1);
    expect(refused.stdout).toContain("REFUSED dr.k1: its seal does not verify under this token's integrity key");
    expect(refused.stdout).toContain('keys import: refused, nothing written: 0 conflicts, 5 rows refused');
    expect(await dumpStore('postgres', pgC())).toMatch(/^\[\]\n\[\]$/);

    // A row whose public key was swapped (and the checksum recomputed): --reseal tests each key, and refuses.
    const swapped = cli.path('swapped.jsonl');
    rewriteExport(exported, swapped, ([k1, k2]) => ([k1!.publicKeyDer, k2!.publicKeyDer] = [k2!.publicKeyDer, k1!.publicKeyDer]));
    const unusable = cli.run(['keys', 'import', swapped, ...store, '--reseal'], { env: tokenC });
    expect(unusable.status).toBe(1);
    expect(unusable.stdout).toMatch(/REFUSED dr\.k1: not usable on this token, so not resealed: KEY_INTEGRITY/);
    expect(unusable.stdout).toContain('keys import: refused, nothing written');
    expect(await dumpStore('postgres', pgC())).toMatch(/^\[\]\n\[\]$/);

    const resealed = cli.run(['keys', 'import', exported, ...store, '--reseal'], { env: tokenC });
    expect(resealed.status, resealed.stdout + resealed.stderr).toBe(0);
    expect(resealed.stdout).toContain('keys import: 5 rows imported (5 resealed here, 0 unsealed)');
    const verified = cli.run(['keys', 'verify', ...store, '--require-sealed-rows'], { env: tokenC });
    expect(verified.status).toBe(0);
    expect(verified.stdout).toContain('5 passed, 0 failed');
    const audit = cli.run(['audit', 'export', ...store], { env: tokenC }).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.filter((r) => r.kind === 'keys-import-resealed')).toHaveLength(5);
  });
});

describe('token D: another master key', () => {
  it('keys verify fails every key, naming each, and exits 1', () => {
    const store = ['--postgres-url', pgD()];
    // The integrity key is a copy, so the seals verify and the rows import; their blobs do not open here.
    expect(cli.run(['keys', 'import', exported, ...store], { env: tokenD }).status).toBe(0);
    const verified = cli.run(['keys', 'verify', ...store], { env: tokenD });
    expect(verified.status).toBe(1);
    for (const [keyId] of KEYS) expect(verified.stdout).toMatch(new RegExp(`FAILED ${keyId.replace('.', '\\.')}: KEY_INTEGRITY: stored key cannot be unwrapped`));
    expect(verified.stdout).toContain('keys verify: 5 keys checked: 0 passed, 5 failed');
    const audit = cli.run(['audit', 'export', ...store], { env: tokenD }).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(audit.filter((r) => r.kind === 'keys-verify' && r.outcome === 'error' && r.code === 'KEY_INTEGRITY').map((r) => r.keyId).sort()).toEqual(KEYS.map(([k]) => k).sort());
  });
});
