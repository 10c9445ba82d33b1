// Key store on PostgreSQL (a pg pool), for several drivers sharing one database.
import pg from 'pg';
import { isAlgorithm } from '../crypto/algorithms.js';
import { ConfigError, DatabaseError, DriverError } from '../errors.js';
import { KEY_COLUMNS, KEY_MUTABLE_COLUMNS, keyMutableValues, keyRowValues, migrationSql, pendingMigrations, SCHEMA_MIGRATIONS_SQL } from './migrations.js';
import type { InsertOutcome, KeyRecord, WrappedKeyStore } from './store.js';
import { PostgresAuditLog, insertStatement } from './postgres-audit.js';
import type { AuditRecord } from '../audit/record.js';

const CONNECT_TIMEOUT_MS = 5000;
const STATEMENT_TIMEOUT_MS = 10_000;
/** Client side, a little past the server's limit, for a server that has stopped answering at all. */
const QUERY_TIMEOUT_MS = 15_000;
const DEFAULT_POOL_SIZE = 10;
// Any fixed number will do: advisory locks are per database, so this only makes drivers
// migrating the same database take turns.
const MIGRATION_LOCK = 0x68736d64;

const UNAVAILABLE_ERRNOS = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE',
]);
// Shutting down, too many connections, statement timeout, lock wait, missing database. Class 08
// (connection) and 28 (authorisation: a rotated password) are matched by prefix below.
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '57014', '55P03', '3D000']);
const UNAVAILABLE_MESSAGES = ['Connection terminated', 'timeout exceeded when trying to connect', 'Query read timeout'];

/** Connects, brings the schema up to date, and returns the store. The URL's password never leaves here. */
export async function openPostgresStore(url: string, options: { poolSize?: number } = {}): Promise<WrappedKeyStore> {
  const target = parseTarget(url);
  const max = options.poolSize ?? DEFAULT_POOL_SIZE;
  if (!Number.isInteger(max) || max < 1) throw new ConfigError(`PostgreSQL pool size must be a positive integer, not ${max}`);
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    statement_timeout: STATEMENT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    application_name: 'hsm-driver',
  });
  // An idle client whose server went away is emitted here; without a listener Node would crash.
  // The pool has already dropped it, and the next query reconnects or reports DATABASE_UNAVAILABLE.
  pool.on('error', () => {});
  try {
    await migrate(pool, target.where);
  } catch (err) {
    await pool.end().catch(() => {});
    throw toStoreError(err, 'open', target);
  }
  return new PostgresStore(pool, target);
}

interface Target {
  /** host:port/database, for messages: no user, no password. */
  where: string;
  /** Strings to cut out of any driver message before it becomes ours. */
  secrets: string[];
}

function parseTarget(url: string): Target {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not echoing the input: it may hold a password.
    throw new ConfigError('PostgreSQL URL is not a valid URL');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new ConfigError(`PostgreSQL URL must start with postgres:// or postgresql://, not ${parsed.protocol}//`);
  }
  const database = safeDecode(parsed.pathname.slice(1)) || '(default database)';
  const where = `${parsed.hostname || 'local socket'}:${parsed.port || '5432'}/${database}`;
  const secrets = [url, parsed.password, safeDecode(parsed.password)].filter((s) => s.length > 0);
  return { where, secrets };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Runs pending migrations in one transaction holding an advisory lock, so racing drivers take turns. */
async function migrate(pool: pg.Pool, where: string): Promise<void> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    // Create only when missing: CREATE TABLE IF NOT EXISTS still needs CREATE rights, which a
    // database an administrator has already migrated need not grant us.
    const found = await client.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
    if (found.rows[0]?.present !== true) await client.query(SCHEMA_MIGRATIONS_SQL.postgres);
    const current = await client.query('SELECT coalesce(max(version), 0) AS version FROM schema_migrations');
    for (const migration of pendingMigrations(Number(current.rows[0]?.version ?? 0), where)) {
      await client.query(migrationSql(migration, 'postgres'));
      await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [migration.version]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

/** Audit records inside the caller's transaction. */
async function insertAudit(client: pg.PoolClient, records: readonly AuditRecord[]): Promise<void> {
  if (records.length === 0) return;
  const { text, values } = insertStatement(records);
  await client.query(text, values);
}

/** Replaces a row only while every column but key_id and created_at is still as read. */
const REPLACE_KEY = (() => {
  const n = KEY_MUTABLE_COLUMNS.length;
  const set = KEY_MUTABLE_COLUMNS.map((c, i) => `${c} = $${i + 1}`).join(', ');
  const same = KEY_MUTABLE_COLUMNS.map((c, i) => `${c} IS NOT DISTINCT FROM $${n + 2 + i}`).join(' AND ');
  return `UPDATE keys SET ${set} WHERE key_id = $${n + 1} AND ${same}`;
})();

class PostgresStore implements WrappedKeyStore {
  readonly kind = 'postgres';
  private closed = false;
  readonly audit: PostgresAuditLog;

  constructor(
    private readonly pool: pg.Pool,
    private readonly target: Target,
  ) {
    this.audit = new PostgresAuditLog((action, text, values) => this.query(action, text, values));
  }

  async get(keyId: string): Promise<KeyRecord | undefined> {
    const { rows } = await this.query('read', `SELECT ${KEY_COLUMNS} FROM keys WHERE key_id = $1`, [keyId]);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  async insertIfAbsent(record: KeyRecord): Promise<InsertOutcome> {
    const { rows } = await this.query(
      'insert',
      `INSERT INTO keys (${KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (key_id) DO NOTHING RETURNING ${KEY_COLUMNS}`,
      keyRowValues(record, 'postgres'),
    );
    if (rows[0] !== undefined) return { stored: toRecord(rows[0]), inserted: true };
    // DO NOTHING waited for the other driver's insert to commit, so a fresh read sees its row.
    const winner = await this.get(record.keyId);
    if (winner === undefined) throw new DatabaseError('INTERNAL', `keyId ${record.keyId} conflicted but is not stored`);
    return { stored: winner, inserted: false };
  }

  async countKeys(): Promise<number> {
    const { rows } = await this.query('count', 'SELECT count(*) AS n FROM keys', []);
    return Number(rows[0]?.n ?? 0);
  }

  async listKeys(afterKeyId: string, limit: number): Promise<KeyRecord[]> {
    const { rows } = await this.query('list', `SELECT ${KEY_COLUMNS} FROM keys WHERE key_id > $1 ORDER BY key_id LIMIT $2`, [afterKeyId, limit]);
    return rows.map(toRecord);
  }

  async replaceKey(expected: KeyRecord, next: KeyRecord): Promise<boolean> {
    if (next.keyId !== expected.keyId) throw new DatabaseError('INTERNAL', 'replaceKey cannot change a keyId');
    const { rowCount } = await this.query('update', REPLACE_KEY, [...keyMutableValues(next), expected.keyId, ...keyMutableValues(expected)]);
    return rowCount === 1;
  }

  async replaceKeysWithAudit(changes: ReadonlyArray<{ expected: KeyRecord; next: KeyRecord }>, recordsFor: (replaced: KeyRecord[]) => Promise<AuditRecord[]>): Promise<KeyRecord[]> {
    return this.transaction('update', async (client) => {
      const replaced: KeyRecord[] = [];
      for (const { expected, next } of changes) {
        const { rowCount } = await client.query(REPLACE_KEY, [...keyMutableValues(next), expected.keyId, ...keyMutableValues(expected)]);
        if (rowCount === 1) replaced.push(next);
      }
      await insertAudit(client, await recordsFor(replaced));
      return replaced;
    });
  }

  async insertKeysWithAudit(rows: readonly KeyRecord[], recordsFor: (inserted: KeyRecord[]) => Promise<AuditRecord[]>): Promise<InsertOutcome[]> {
    return this.transaction('insert', async (client) => {
      const outcomes: InsertOutcome[] = [];
      for (const record of rows) {
        const added = await client.query(`INSERT INTO keys (${KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key_id) DO NOTHING RETURNING ${KEY_COLUMNS}`, keyRowValues(record, 'postgres'));
        // DO NOTHING waited for another writer of the keyId to commit, so this read sees its row.
        const row = added.rows[0] ?? (await client.query(`SELECT ${KEY_COLUMNS} FROM keys WHERE key_id = $1`, [record.keyId])).rows[0];
        if (row === undefined) throw new DatabaseError('INTERNAL', `keyId ${record.keyId} conflicted but is not stored`);
        outcomes.push({ stored: toRecord(row), inserted: added.rows[0] !== undefined });
      }
      await insertAudit(client, await recordsFor(outcomes.filter((o) => o.inserted).map((o) => o.stored)));
      return outcomes;
    });
  }

  /** Runs `fn` on one client between BEGIN and COMMIT (ROLLBACK if it throws). */
  private async transaction<T>(action: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new DatabaseError('INTERNAL', 'PostgreSQL store used after close');
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw toStoreError(err, action, this.target);
    }
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw toStoreError(err, action, this.target);
    } finally {
      client.release(broken);
    }
  }

  async ping(): Promise<void> {
    await this.query('ping', 'SELECT 1', []);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  private async query(action: string, text: string, values: unknown[]): Promise<pg.QueryResult> {
    if (this.closed) throw new DatabaseError('INTERNAL', 'PostgreSQL store used after close');
    try {
      return await this.pool.query(text, values);
    } catch (err) {
      throw toStoreError(err, action, this.target);
    }
  }
}

function toRecord(row: Record<string, unknown>): KeyRecord {
  const keyId = String(row.key_id);
  const { algorithm, created_at: createdAt } = row;
  if (!isAlgorithm(algorithm)) throw new DatabaseError('INTERNAL', `stored keyId ${keyId} has an unknown algorithm`);
  if (!(createdAt instanceof Date)) throw new DatabaseError('INTERNAL', `stored keyId ${keyId} has a bad created_at`);
  return {
    keyId,
    algorithm,
    publicKeyDer: bytes(row.public_key_der) ?? Buffer.alloc(0),
    wrappedKey: bytes(row.wrapped_key),
    residentId: bytes(row.resident_id),
    wrapMechanism: row.wrap_mechanism == null ? null : String(row.wrap_mechanism),
    masterKeyLabel: String(row.master_key_label),
    createdAt,
    seal: bytes(row.seal),
  };
}

function bytes(value: unknown): Buffer | null {
  if (value == null) return null;
  if (!Buffer.isBuffer(value)) throw new DatabaseError('INTERNAL', 'a BYTEA column did not come back as bytes');
  return value;
}

/** Sorts a failure into "try again later" or "our bug", with any password cut out of the text. */
function toStoreError(err: unknown, action: string, target: Target): Error {
  if (err instanceof DriverError || err instanceof ConfigError) return err;
  const unavailable = isUnavailable(err);
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  let detail = (typeof message === 'string' && message) || (typeof code === 'string' && code) || 'unknown error';
  if (err instanceof pg.DatabaseError && err.code) detail += ` (SQLSTATE ${err.code})`;
  for (const secret of target.secrets) detail = detail.split(secret).join('[redacted]');
  // Not pg's error itself as the cause: pg can hang its client, password and all, on an error,
  // and a logger serialising the cause would print it. Keep only the redacted text and code.
  const cause = Object.assign(new Error(detail), { code: typeof code === 'string' ? code : undefined });
  return new DatabaseError(
    unavailable ? 'DATABASE_UNAVAILABLE' : 'INTERNAL',
    `PostgreSQL ${action} failed for ${target.where}: ${detail}`,
    { cause },
  );
}

function isUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  // Node reports a host with several addresses (localhost: ::1 and 127.0.0.1) as an AggregateError.
  if (err instanceof AggregateError && err.errors.some(isUnavailable)) return true;
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (UNAVAILABLE_ERRNOS.has(code) || UNAVAILABLE_SQLSTATES.has(code)) return true;
    if (code.startsWith('08') || code.startsWith('28')) return true;
  }
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.some((m) => message.includes(m));
}
