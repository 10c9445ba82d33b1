// Numbered schema migrations for both key stores, and the check that refuses a newer schema.
import { ConfigError } from '../errors.js';
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
  'key_id, algorithm, public_key_der, wrapped_key, resident_id, wrap_mechanism, master_key_label, created_at';

/** A record's values in KEY_COLUMNS order; SQLite keeps created_at as ISO text, PostgreSQL as timestamptz. */
export function keyRowValues(r: KeyRecord, dialect: 'sqlite'): Array<string | Buffer | null>;
export function keyRowValues(r: KeyRecord, dialect: 'postgres'): Array<string | Buffer | Date | null>;
export function keyRowValues(r: KeyRecord, dialect: Dialect): Array<string | Buffer | Date | null> {
  const createdAt = dialect === 'sqlite' ? r.createdAt.toISOString() : r.createdAt;
  return [r.keyId, r.algorithm, r.publicKeyDer, r.wrappedKey, r.residentId, r.wrapMechanism, r.masterKeyLabel, createdAt];
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
];

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
