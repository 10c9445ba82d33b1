// openStore picks PostgreSQL when given a URL and SQLite otherwise.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../../runtime/store/index.js';
import { usePostgresDatabase } from '../../support/postgres.js';

const databaseUrl = usePostgresDatabase();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hsm-store-index-'));
const sqlitePath = path.join(dir, 'keys.db');

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('openStore', () => {
  it('opens SQLite when no PostgreSQL URL is given', async () => {
    for (const postgresUrl of [undefined, '']) {
      const store = await openStore({ postgresUrl, sqlitePath });
      expect(store.kind).toBe('sqlite');
      await store.close();
    }
  });

  it('opens PostgreSQL when a URL is given, and leaves the SQLite path alone', async () => {
    const elsewhere = path.join(dir, 'unused', 'keys.db');
    const store = await openStore({ postgresUrl: databaseUrl(), sqlitePath: elsewhere });
    expect(store.kind).toBe('postgres');
    await store.ping();
    await store.close();
    expect(fs.existsSync(elsewhere)).toBe(false);
  });
});
