// The SQLite key store against a real file in a temporary directory.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../runtime/errors.js';
import { openSqliteStore } from '../../../runtime/store/sqlite.js';
import { describeStoreContract, wrappedRecord } from './store-suite.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hsm-store-'));
// Nested, so the store has to create the directory itself.
const file = path.join(dir, 'state', 'keys.db');

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A plain connection beside the store's, for looking at and tampering with the file. */
function raw<T>(fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(file);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

describeStoreContract('sqlite', {
  open: () => openSqliteStore(file),
  appliedVersions: async () =>
    raw((db) => db.prepare('SELECT version FROM schema_migrations ORDER BY version').all().map((r) => Number(r.version))),
  addSchemaVersion: async (version) => {
    raw((db) => db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(version, 'now'));
  },
  removeSchemaVersion: async (version) => {
    raw((db) => db.prepare('DELETE FROM schema_migrations WHERE version = ?').run(version));
  },
});

describe('sqlite store', () => {
  it('creates a private directory and file, in WAL mode', async () => {
    const store = await openSqliteStore(file);
    await store.close();
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(raw((db) => db.prepare('PRAGMA journal_mode').get())).toEqual({ journal_mode: 'wal' });
  });

  it('reports DATABASE_UNAVAILABLE for a path it cannot create', async () => {
    const blocker = path.join(dir, 'a-regular-file');
    fs.writeFileSync(blocker, 'not a directory');
    for (const target of [path.join(blocker, 'keys.db'), path.join(blocker, 'deeper', 'keys.db')]) {
      await expect(openSqliteStore(target)).rejects.toMatchObject({
        name: 'DatabaseError',
        code: 'DATABASE_UNAVAILABLE',
      });
    }
  });

  it('reports DATABASE_UNAVAILABLE for a file that is not a database', async () => {
    const junk = path.join(dir, 'junk.db');
    fs.writeFileSync(junk, Buffer.alloc(8192, 0x5a));
    await expect(openSqliteStore(junk)).rejects.toMatchObject({ code: 'DATABASE_UNAVAILABLE' });
  });

  it('refuses an in-memory or empty path, which would lose every key', async () => {
    await expect(openSqliteStore(':memory:')).rejects.toBeInstanceOf(ConfigError);
    await expect(openSqliteStore('')).rejects.toBeInstanceOf(ConfigError);
  });

  it('reports DATABASE_UNAVAILABLE when another process holds the write lock too long', async () => {
    const store = await openSqliteStore(file);
    const other = new DatabaseSync(file);
    try {
      other.exec('BEGIN IMMEDIATE');
      await expect(store.insertIfAbsent(wrappedRecord())).rejects.toMatchObject({
        code: 'DATABASE_UNAVAILABLE',
        message: expect.stringMatching(/locked|busy/i),
      });
    } finally {
      other.exec('ROLLBACK');
      other.close();
      await store.close();
    }
  });

  it('lets several processes open one new file and race an insert', async () => {
    // Threads in this process would share one lock table; separate processes are what a
    // restart under a supervisor, or two drivers on one host, really look like.
    const bundle = path.join(dir, 'sqlite-store.mjs');
    const source = fileURLToPath(new URL('../../../runtime/store/sqlite.ts', import.meta.url));
    await build({ entryPoints: [source], bundle: true, platform: 'node', format: 'esm', outfile: bundle, logLevel: 'silent' });
    const racer = path.join(dir, 'racer.mjs');
    fs.writeFileSync(racer, RACER.replace('BUNDLE', JSON.stringify(bundle)));
    const target = path.join(dir, 'raced', 'keys.db');
    const startAt = String(Date.now() + 1500);
    const runs = Array.from({ length: 16 }, () => promisify(execFile)(process.execPath, [racer, target, startAt]));
    const outcomes = (await Promise.all(runs)).map((r) => JSON.parse(r.stdout) as { inserted: boolean; winner: string });
    expect(outcomes.filter((o) => o.inserted)).toHaveLength(1);
    expect(new Set(outcomes.map((o) => o.winner)).size).toBe(1);
  });
});

/** One racing process: waits for the shared start instant, opens, inserts, prints the outcome. */
const RACER = `
import { openSqliteStore } from BUNDLE;
const [file, startAt] = process.argv.slice(2);
while (Date.now() < Number(startAt));
const store = await openSqliteStore(file);
const outcome = await store.insertIfAbsent({
  keyId: 'shared', algorithm: 'rsa-2048', publicKeyDer: Buffer.from(String(process.pid)),
  wrappedKey: Buffer.from('w'), residentId: null, wrapMechanism: null, masterKeyLabel: 'm', createdAt: new Date(), seal: null,
});
await store.close();
process.stdout.write(JSON.stringify({ inserted: outcome.inserted, winner: outcome.stored.publicKeyDer.toString() }));
`;
