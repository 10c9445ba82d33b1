// Picks the key store from configuration: PostgreSQL when a URL is given, else a SQLite file.
import { openPostgresStore } from './postgres.js';
import { openSqliteStore } from './sqlite.js';
import type { WrappedKeyStore } from './store.js';

export type { InsertOutcome, KeyRecord, WrappedKeyStore } from './store.js';

export interface StoreOptions {
  /** Shared database for several drivers; an empty string counts as unset, like an empty env var. */
  postgresUrl?: string;
  /** Local file used when there is no PostgreSQL URL. */
  sqlitePath: string;
}

export async function openStore(opts: StoreOptions): Promise<WrappedKeyStore> {
  if (opts.postgresUrl) return openPostgresStore(opts.postgresUrl);
  return openSqliteStore(opts.sqlitePath);
}
