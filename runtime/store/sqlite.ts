// Key store on a local SQLite file (node:sqlite), for one host or development.
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type SQLOutputValue, type StatementSync } from 'node:sqlite';
import { isAlgorithm } from '../crypto/algorithms.js';
import { ConfigError, DatabaseError, DriverError } from '../errors.js';
import { KEY_COLUMNS, KEY_MUTABLE_COLUMNS, keyMutableValues, keyRowValues, migrationSql, pendingMigrations, SCHEMA_MIGRATIONS_SQL } from './migrations.js';
import type { AuditRecord } from '../audit/record.js';
import type { InsertOutcome, KeyRecord, WrappedKeyStore } from './store.js';
import { SqliteAuditLog } from './sqlite-audit.js';

/** How long a write waits for another process's lock before giving up with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

// Primary result codes meaning the file cannot be used right now (locked, unreadable, full),
// as opposed to our SQL or data being wrong: PERM, BUSY, LOCKED, NOMEM, READONLY, IOERR,
// CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
const UNAVAILABLE_CODES = new Set([3, 5, 6, 7, 8, 10, 11, 13, 14, 15, 26]);
// Creating the directory or file failed; EEXIST is mkdir finding a regular file in the way.
const UNAVAILABLE_ERRNOS = new Set(['EACCES', 'EPERM', 'ENOTDIR', 'EEXIST', 'ENOENT', 'EROFS', 'ENOSPC', 'EIO', 'EISDIR']);

/** Opens (creating if needed) the database file and brings its schema up to date. */
export async function openSqliteStore(file: string): Promise<WrappedKeyStore> {
  if (file === '' || file === ':memory:') {
    throw new ConfigError('SQLite path must name a file: an in-memory database would lose every key on restart');
  }
  const where = path.resolve(file);
  let db: DatabaseSync | undefined;
  try {
    // Wrapped keys are only as safe as the master key, but nobody else needs to read them.
    fs.mkdirSync(path.dirname(where), { recursive: true, mode: 0o700 });
    fs.closeSync(fs.openSync(where, 'a', 0o600));
    db = new DatabaseSync(where);
    // busy_timeout first, so the pragmas below wait for a process that is migrating.
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    await enableWal(db);
    // FULL, not WAL's usual NORMAL: a key we reported as created must survive a power cut.
    db.exec('PRAGMA synchronous = FULL');
    db.exec('PRAGMA foreign_keys = ON');
    migrate(db, where);
    return new SqliteStore(db, where);
  } catch (err) {
    try {
      db?.close();
    } catch {
      // Already failing; the first error is the one worth reporting.
    }
    throw toStoreError(err, 'open', where);
  }
}

/**
 * Switching a new file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once,
 * without waiting on busy_timeout, while another process is opening the same file; so wait here.
 */
async function enableWal(db: DatabaseSync): Promise<void> {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      db.exec('PRAGMA journal_mode = WAL');
      return;
    } catch (err) {
      const { errcode } = err as { errcode?: unknown };
      const busy = typeof errcode === 'number' && (errcode & 0xff) === 5;
      if (!busy || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 40));
    }
  }
}

/** Applies pending migrations under BEGIN IMMEDIATE, so two processes opening at once take turns. */
function migrate(db: DatabaseSync, where: string): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(SCHEMA_MIGRATIONS_SQL.sqlite);
    const row = db.prepare('SELECT coalesce(max(version), 0) AS version FROM schema_migrations').get();
    const record = db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)');
    for (const migration of pendingMigrations(Number(row?.version ?? 0), where)) {
      db.exec(migrationSql(migration, 'sqlite'));
      record.run(migration.version, new Date().toISOString());
    }
    db.exec('COMMIT');
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

class SqliteStore implements WrappedKeyStore {
  readonly kind = 'sqlite';
  private closed = false;
  private readonly selectKey: StatementSync;
  private readonly insertKey: StatementSync;
  private readonly countAll: StatementSync;
  private readonly listAfter: StatementSync;
  private readonly replace: StatementSync;
  readonly audit: SqliteAuditLog;

  constructor(
    private readonly db: DatabaseSync,
    private readonly where: string,
  ) {
    this.selectKey = db.prepare(`SELECT ${KEY_COLUMNS} FROM keys WHERE key_id = ?`);
    this.insertKey = db.prepare(
      `INSERT INTO keys (${KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_id) DO NOTHING`,
    );
    this.countAll = db.prepare('SELECT count(*) AS n FROM keys');
    this.listAfter = db.prepare(`SELECT ${KEY_COLUMNS} FROM keys WHERE key_id > ? ORDER BY key_id LIMIT ?`);
    // IS, not =: NULL IS NULL holds, so a NULL column compares equal to an expected NULL.
    this.replace = db.prepare(
      `UPDATE keys SET ${KEY_MUTABLE_COLUMNS.map((c) => `${c} = ?`).join(', ')} WHERE key_id = ? AND ${KEY_MUTABLE_COLUMNS.map((c) => `${c} IS ?`).join(' AND ')}`,
    );
    this.audit = new SqliteAuditLog(db, (action, fn) => this.run(action, fn));
  }

  async get(keyId: string): Promise<KeyRecord | undefined> {
    return this.run('read', () => {
      const row = this.selectKey.get(keyId);
      return row === undefined ? undefined : toRecord(row);
    });
  }

  async insertIfAbsent(record: KeyRecord): Promise<InsertOutcome> {
    return this.run('insert', () => {
      const { changes } = this.insertKey.run(...keyRowValues(record, 'sqlite'));
      // Rows are never updated or deleted, so whatever we read now is what won.
      const row = this.selectKey.get(record.keyId);
      if (row === undefined) throw new DatabaseError('INTERNAL', `keyId ${record.keyId} missing right after insert`);
      return { stored: toRecord(row), inserted: Number(changes) === 1 };
    });
  }

  async countKeys(): Promise<number> {
    return this.run('count', () => Number(this.countAll.get()?.n ?? 0));
  }

  async listKeys(afterKeyId: string, limit: number): Promise<KeyRecord[]> {
    return this.run('list', () => this.listAfter.all(afterKeyId, limit).map(toRecord));
  }

  async replaceKey(expected: KeyRecord, next: KeyRecord): Promise<boolean> {
    if (next.keyId !== expected.keyId) throw new DatabaseError('INTERNAL', 'replaceKey cannot change a keyId');
    return this.run('update', () => Number(this.replace.run(...keyMutableValues(next), expected.keyId, ...keyMutableValues(expected)).changes) === 1);
  }

  async replaceKeysWithAudit(changes: ReadonlyArray<{ expected: KeyRecord; next: KeyRecord }>, recordsFor: (replaced: KeyRecord[]) => Promise<AuditRecord[]>): Promise<KeyRecord[]> {
    return this.writeWithAudit(
      'update',
      () => changes.filter(({ expected, next }) => Number(this.replace.run(...keyMutableValues(next), expected.keyId, ...keyMutableValues(expected)).changes) === 1).map((c) => c.next),
      recordsFor,
    );
  }

  async insertKeysWithAudit(rows: readonly KeyRecord[], recordsFor: (inserted: KeyRecord[]) => Promise<AuditRecord[]>): Promise<InsertOutcome[]> {
    const outcomes = (): InsertOutcome[] =>
      rows.map((record) => {
        const inserted = Number(this.insertKey.run(...keyRowValues(record, 'sqlite')).changes) === 1;
        const row = this.selectKey.get(record.keyId);
        if (row === undefined) throw new DatabaseError('INTERNAL', `keyId ${record.keyId} missing right after insert`);
        return { stored: toRecord(row), inserted };
      });
    return this.writeWithAudit('insert', outcomes, (done) => recordsFor(done.filter((o) => o.inserted).map((o) => o.stored)));
  }

  /**
   * `write`, then the audit records `recordsFor` makes of its result, in one transaction holding
   * the write lock (the records' seals are made in the HSM meanwhile: a few ms).
   */
  private async writeWithAudit<T>(action: string, write: () => T, recordsFor: (result: T) => Promise<AuditRecord[]>): Promise<T> {
    this.run(action, () => this.db.exec('BEGIN IMMEDIATE'));
    try {
      const result = this.run(action, write);
      const records = await recordsFor(result);
      this.run('audit append', () => this.audit.insertAll(records));
      this.run(action, () => this.db.exec('COMMIT'));
      return result;
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  async ping(): Promise<void> {
    this.run('ping', () => this.db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.run('close', () => this.db.close());
  }

  private run<T>(action: string, fn: () => T): T {
    if (this.closed && action !== 'close') throw new DatabaseError('INTERNAL', 'SQLite store used after close');
    try {
      return fn();
    } catch (err) {
      throw toStoreError(err, action, this.where);
    }
  }
}

function toRecord(row: Record<string, SQLOutputValue>): KeyRecord {
  const keyId = text(row.key_id, 'key_id');
  const algorithm = row.algorithm;
  if (!isAlgorithm(algorithm)) throw new DatabaseError('INTERNAL', `stored keyId ${keyId} has an unknown algorithm`);
  const createdAt = new Date(text(row.created_at, 'created_at'));
  if (Number.isNaN(createdAt.getTime())) throw new DatabaseError('INTERNAL', `stored keyId ${keyId} has a bad created_at`);
  return {
    keyId,
    algorithm,
    publicKeyDer: blob(row.public_key_der, 'public_key_der') ?? Buffer.alloc(0),
    wrappedKey: blob(row.wrapped_key, 'wrapped_key'),
    residentId: blob(row.resident_id, 'resident_id'),
    wrapMechanism: row.wrap_mechanism === null ? null : text(row.wrap_mechanism, 'wrap_mechanism'),
    masterKeyLabel: text(row.master_key_label, 'master_key_label'),
    createdAt,
    seal: blob(row.seal, 'seal'),
  };
}

function text(value: SQLOutputValue | undefined, column: string): string {
  if (typeof value !== 'string') throw new DatabaseError('INTERNAL', `column ${column} is not text`);
  return value;
}

function blob(value: SQLOutputValue | undefined, column: string): Buffer | null {
  if (value === null) return null;
  if (!(value instanceof Uint8Array)) throw new DatabaseError('INTERNAL', `column ${column} is not a blob`);
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** Sorts a failure into "try again later" or "our bug"; our own errors pass through unchanged. */
function toStoreError(err: unknown, action: string, where: string): Error {
  if (err instanceof DriverError || err instanceof ConfigError) return err;
  const { errcode, code, message } = (err ?? {}) as { errcode?: unknown; code?: unknown; message?: unknown };
  const detail = typeof message === 'string' ? message : String(err);
  const unavailable =
    (typeof errcode === 'number' && UNAVAILABLE_CODES.has(errcode & 0xff)) ||
    (typeof code === 'string' && UNAVAILABLE_ERRNOS.has(code));
  return new DatabaseError(
    unavailable ? 'DATABASE_UNAVAILABLE' : 'INTERNAL',
    `SQLite ${action} failed for ${where}: ${detail}`,
    { cause: err },
  );
}
