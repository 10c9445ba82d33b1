// The PostgreSQL key store against a real server, in a database made for this file.
import { inspect } from 'node:util';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../runtime/errors.js';
import { LATEST_VERSION } from '../../../runtime/store/migrations.js';
import { openPostgresStore } from '../../../runtime/store/postgres.js';
import { admin, urlForDatabase, usePostgresDatabase } from '../../support/postgres.js';
import { describeStoreContract, wrappedRecord } from './store-suite.js';

const databaseUrl = usePostgresDatabase();

/** A plain connection beside the store's pool, for looking at and tampering with the database. */
async function raw<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describeStoreContract('postgres', {
  open: () => openPostgresStore(databaseUrl(), { poolSize: 5 }),
  appliedVersions: () =>
    raw(async (c) => (await c.query('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version)),
  addSchemaVersion: async (version) => {
    await raw((c) => c.query('INSERT INTO schema_migrations (version) VALUES ($1)', [version]));
  },
  removeSchemaVersion: async (version) => {
    await raw((c) => c.query('DELETE FROM schema_migrations WHERE version = $1', [version]));
  },
});

describe('postgres store', () => {
  it('reports DATABASE_UNAVAILABLE for a closed port, without the password', async () => {
    const opening = openPostgresStore('postgres://u:s3cretpw@127.0.0.1:1/x');
    const err: unknown = await opening.catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'DatabaseError', code: 'DATABASE_UNAVAILABLE' });
    expect((err as Error).message).toContain('127.0.0.1:1/x');
    expect((err as Error).message).not.toContain('s3cretpw');
    expect(inspect(err, { depth: 5 })).not.toContain('s3cretpw');
  });

  it('keeps the password out of errors from a working connection too', async () => {
    const url = new URL(databaseUrl());
    url.username = 'postgres';
    url.password = 's3cretpw'; // the test server trusts local connections, so any password will do
    const store = await openPostgresStore(url.toString());
    try {
      const err: unknown = await store.insertIfAbsent(wrappedRecord({ wrappedKey: null })).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'INTERNAL', message: expect.stringContaining('SQLSTATE 23514') });
      expect(inspect(err, { depth: 10 })).not.toContain('s3cretpw');
    } finally {
      await store.close();
    }
  });

  it('lets drivers racing to migrate a fresh database each apply it once between them', async () => {
    const fresh = `${new URL(databaseUrl()).pathname.slice(1)}_fresh`;
    await admin(`CREATE DATABASE ${fresh}`);
    try {
      const stores = await Promise.all(Array.from({ length: 6 }, () => openPostgresStore(urlForDatabase(fresh))));
      await Promise.all(stores.map((s) => s.close()));
      const client = new pg.Client({ connectionString: urlForDatabase(fresh) });
      await client.connect();
      const { rows } = await client.query('SELECT version FROM schema_migrations ORDER BY version');
      await client.end();
      expect(rows.map((r) => r.version)).toEqual(Array.from({ length: LATEST_VERSION }, (_, i) => i + 1));
    } finally {
      await admin(`DROP DATABASE IF EXISTS ${fresh} WITH (FORCE)`);
    }
  });

  it('reports DATABASE_UNAVAILABLE for a database that does not exist', async () => {
    await expect(openPostgresStore(urlForDatabase('hsm_no_such_database'))).rejects.toMatchObject({
      code: 'DATABASE_UNAVAILABLE',
    });
  });

  it('refuses a malformed URL without echoing it', async () => {
    const opening = openPostgresStore('mysql://u:s3cretpw@127.0.0.1/x');
    await expect(opening).rejects.toBeInstanceOf(ConfigError);
    await expect(opening).rejects.not.toThrow(/s3cretpw/);
    await expect(openPostgresStore('not a url s3cretpw')).rejects.not.toThrow(/s3cretpw/);
  });

  it('survives the server dropping its idle connections', async () => {
    const store = await openPostgresStore(databaseUrl(), { poolSize: 2 });
    try {
      await Promise.all([store.ping(), store.ping()]);
      const killed = await admin(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND application_name = 'hsm-driver'`,
        [new URL(databaseUrl()).pathname.slice(1)],
      );
      expect(killed.rowCount).toBeGreaterThan(0);
      // Give the pool time to see the drop: with no 'error' listener this would crash the process.
      await new Promise((resolve) => setTimeout(resolve, 200));
      await store.ping();
      expect(await store.countKeys()).toBeGreaterThanOrEqual(0);
    } finally {
      await store.close();
    }
  });
});
