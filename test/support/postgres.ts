// Gives a test file its own fresh PostgreSQL database, starting the local cluster if it is down.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';

/** The server to test against; its own database is only used to create and drop ours. */
export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const START_WAIT_MS = 30_000;

/**
 * Registers hooks that create a uniquely named database before the file's tests and drop it
 * after. Returns a function giving that database's URL, to call inside tests and hooks.
 */
export function usePostgresDatabase(): () => string {
  let url: string | undefined;
  let name: string | undefined;
  beforeAll(async () => {
    await ensureServer();
    name = `hsm_test_${process.pid}_${randomBytes(4).toString('hex')}`;
    await admin(`CREATE DATABASE ${name}`);
    url = urlForDatabase(name);
  });
  afterAll(async () => {
    // FORCE, so a store a failed test left open cannot keep the database alive.
    if (name !== undefined) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  return () => {
    if (url === undefined) throw new Error('test database not created yet: call this inside a test or hook');
    return url;
  };
}

/** PG_URL with its database swapped for `database`. */
export function urlForDatabase(database: string): string {
  const url = new URL(PG_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Runs statements on the server's maintenance database (CREATE/DROP DATABASE, pg_terminate_backend). */
export async function admin(sql: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await client.query(sql, values);
  } finally {
    await client.end();
  }
}

async function ensureServer(): Promise<void> {
  if (await reachable()) return;
  startLocalCluster();
  const deadline = Date.now() + START_WAIT_MS;
  while (Date.now() < deadline) {
    if (await reachable()) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`PostgreSQL at ${new URL(PG_URL).host} is not reachable and did not start`);
}

async function reachable(): Promise<boolean> {
  try {
    await admin('SELECT 1');
    return true;
  } catch {
    return false;
  }
}

function startLocalCluster(): void {
  const versions = fs.existsSync('/etc/postgresql') ? fs.readdirSync('/etc/postgresql') : [];
  const version = versions.sort((a, b) => Number(a) - Number(b)).at(-1);
  if (version === undefined) throw new Error('PostgreSQL is not reachable and no local cluster is installed');
  try {
    execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'], { stdio: 'pipe' });
  } catch {
    // Another test file may have started it a moment ago; the polling that follows decides.
  }
}
