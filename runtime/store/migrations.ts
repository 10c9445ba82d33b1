// Numbered schema migrations for both key stores, and the check that refuses a newer schema.
import { ConfigError } from '../errors.js';
import type { AuditRecord } from '../audit/record.js';
import type { KeyRecord } from './store.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Migration {
  version: number;
  name: string;
  /** One script for both dialects, or one per dialect where the SQL differs. */
  sql: string | Readonly<Record<Dialect, string>>;
}

/** The keys table's columns, in the order keyRowValues gives their values. */
export const KEY_COLUMNS =
  'key_id, algorithm, public_key_der, wrapped_key, resident_id, wrap_mechanism, master_key_label, created_at, seal';

/** A record's values in KEY_COLUMNS order; SQLite keeps created_at as ISO text, PostgreSQL as timestamptz. */
export function keyRowValues(r: KeyRecord, dialect: 'sqlite'): Array<string | Buffer | null>;
export function keyRowValues(r: KeyRecord, dialect: 'postgres'): Array<string | Buffer | Date | null>;
export function keyRowValues(r: KeyRecord, dialect: Dialect): Array<string | Buffer | Date | null> {
  const createdAt = dialect === 'sqlite' ? r.createdAt.toISOString() : r.createdAt;
  return [r.keyId, r.algorithm, r.publicKeyDer, r.wrappedKey, r.residentId, r.wrapMechanism, r.masterKeyLabel, createdAt, r.seal];
}

/** The columns replaceKey sets and compares (all but key_id and created_at). */
export const KEY_MUTABLE_COLUMNS = ['algorithm', 'public_key_der', 'wrapped_key', 'resident_id', 'wrap_mechanism', 'master_key_label', 'seal'] as const;

export function keyMutableValues(r: KeyRecord): Array<string | Buffer | null> {
  return [r.algorithm, r.publicKeyDer, r.wrappedKey, r.residentId, r.wrapMechanism, r.masterKeyLabel, r.seal];
}

/** Created before any migration runs, so it cannot itself be a migration. */
export const SCHEMA_MIGRATIONS_SQL: Readonly<Record<Dialect, string>> = {
  sqlite: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
  ) STRICT`,
  postgres: `CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
  )`,
};

// Exactly one of the two key forms: a row with neither could never sign, and a row with both
// would leave it ambiguous which one a signature came from.
const ONE_KEY_FORM = 'CHECK ((wrapped_key IS NULL) <> (resident_id IS NULL))';

/** In version order, contiguous from 1. Never edit one that has shipped: add the next. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'keys',
    sql: {
      // STRICT makes SQLite refuse, say, text in a BLOB column instead of storing it silently.
      sqlite: `CREATE TABLE keys (
        key_id TEXT PRIMARY KEY,
        algorithm TEXT NOT NULL,
        public_key_der BLOB NOT NULL,
        wrapped_key BLOB,
        resident_id BLOB,
        wrap_mechanism TEXT,
        master_key_label TEXT NOT NULL,
        created_at TEXT NOT NULL,
        ${ONE_KEY_FORM}
      ) STRICT`,
      postgres: `CREATE TABLE keys (
        key_id TEXT PRIMARY KEY,
        algorithm TEXT NOT NULL,
        public_key_der BYTEA NOT NULL,
        wrapped_key BYTEA,
        resident_id BYTEA,
        wrap_mechanism TEXT,
        master_key_label TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        ${ONE_KEY_FORM}
      )`,
    },
  },
  {
    version: 2,
    name: 'audit records',
    sql: {
      sqlite: `CREATE TABLE audit_records (
        chain TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at TEXT NOT NULL,
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        kind TEXT NOT NULL,
        key_id TEXT,
        algorithm TEXT,
        data_sha256 BLOB,
        outcome TEXT NOT NULL,
        code TEXT,
        driver_subject TEXT NOT NULL,
        driver_fingerprint TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        seal BLOB,
        PRIMARY KEY (chain, seq)
      ) STRICT;
      CREATE INDEX audit_records_at ON audit_records (at);
      CREATE INDEX audit_records_key_id ON audit_records (key_id);`,
      postgres: `CREATE TABLE audit_records (
        chain TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        kind TEXT NOT NULL,
        key_id TEXT,
        algorithm TEXT,
        data_sha256 BYTEA,
        outcome TEXT NOT NULL,
        code TEXT,
        driver_subject TEXT NOT NULL,
        driver_fingerprint TEXT NOT NULL,
        prev_hash BYTEA NOT NULL,
        hash BYTEA NOT NULL,
        seal BYTEA,
        PRIMARY KEY (chain, seq)
      );
      CREATE INDEX audit_records_at ON audit_records (at);
      CREATE INDEX audit_records_key_id ON audit_records (key_id);`,
    },
  },
  {
    version: 3,
    name: 'key row seals',
    sql: {
      sqlite: 'ALTER TABLE keys ADD COLUMN seal BLOB',
      postgres: 'ALTER TABLE keys ADD COLUMN seal BYTEA',
    },
  },
];

/** The audit_records columns, in the order auditRowValues gives their values. */
export const AUDIT_COLUMNS =
  'chain, seq, at, job_id, attempt, kind, key_id, algorithm, data_sha256, outcome, code, driver_subject, driver_fingerprint, prev_hash, hash, seal';

export function auditRowValues(r: AuditRecord, dialect: 'sqlite'): Array<string | number | Buffer | null>;
export function auditRowValues(r: AuditRecord, dialect: 'postgres'): Array<string | number | Buffer | Date | null>;
export function auditRowValues(r: AuditRecord, dialect: Dialect): Array<string | number | Buffer | Date | null> {
  const at = dialect === 'sqlite' ? r.at.toISOString() : r.at;
  return [r.chain, r.seq, at, r.jobId, r.attempt, r.kind, r.keyId, r.algorithm, r.dataSha256, r.outcome, r.code, r.driverSubject, r.driverFingerprint, r.prevHash, r.hash, r.seal];
}

/** A row read back from either database (SQLite gives ISO text and Uint8Array, pg gives Date and Buffer). */
export function auditRecordOf(row: Record<string, unknown>): AuditRecord {
  const buf = (v: unknown): Buffer | null => (v == null ? null : Buffer.isBuffer(v) ? v : v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.from(String(v)));
  const str = (v: unknown): string | null => (v == null ? null : String(v));
  return {
    chain: String(row.chain),
    seq: Number(row.seq),
    at: row.at instanceof Date ? row.at : new Date(String(row.at)),
    jobId: String(row.job_id),
    attempt: Number(row.attempt),
    kind: String(row.kind),
    keyId: str(row.key_id),
    algorithm: str(row.algorithm),
    dataSha256: buf(row.data_sha256),
    // Kept as stored, whatever it is: the hash check must see exactly what is in the row.
    outcome: String(row.outcome) as AuditRecord['outcome'],
    code: str(row.code),
    driverSubject: String(row.driver_subject),
    driverFingerprint: String(row.driver_fingerprint),
    prevHash: buf(row.prev_hash) ?? Buffer.alloc(0),
    hash: buf(row.hash) ?? Buffer.alloc(0),
    seal: buf(row.seal),
  };
}

/** The newest schema this build knows; a database past it was written by a newer driver. */
export const LATEST_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

export function migrationSql(migration: Migration, dialect: Dialect): string {
  return typeof migration.sql === 'string' ? migration.sql : migration.sql[dialect];
}

/**
 * The migrations still to apply to a database at `current`. Throws ConfigError for a database
 * a newer driver has migrated: running old code on it could write rows that code cannot read.
 */
export function pendingMigrations(current: number, where: string): readonly Migration[] {
  if (current > LATEST_VERSION) {
    throw new ConfigError(
      `database ${where} has schema version ${current}, newer than version ${LATEST_VERSION} that this driver knows; upgrade the driver`,
    );
  }
  return MIGRATIONS.filter((m) => m.version > current);
}
