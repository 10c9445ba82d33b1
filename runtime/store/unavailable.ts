// A key store that could not be opened: every call fails with the reason, so a health job can
// still report the database part as down instead of failing as a whole.
import { DatabaseError, DriverError } from '../errors.js';
import type { StoreOptions } from './index.js';
import type { AuditLog, InsertOutcome, KeyRecord, WrappedKeyStore } from './store.js';

export function storeKind(opts: StoreOptions): 'sqlite' | 'postgres' {
  return opts.postgresUrl ? 'postgres' : 'sqlite';
}

export class UnavailableStore implements WrappedKeyStore {
  private readonly reason: string;
  constructor(
    readonly kind: 'sqlite' | 'postgres',
    cause: unknown,
  ) {
    this.reason = cause instanceof DriverError ? cause.message : 'database unavailable';
  }
  readonly audit: AuditLog = {
    append: () => Promise.reject(this.error()),
    head: () => Promise.reject(this.error()),
    chains: () => Promise.reject(this.error()),
    read: () => Promise.reject(this.error()),
  };
  private error(): Error {
    return new DatabaseError('DATABASE_UNAVAILABLE', this.reason);
  }
  get(): Promise<KeyRecord | undefined> {
    return Promise.reject(this.error());
  }
  insertIfAbsent(): Promise<InsertOutcome> {
    return Promise.reject(this.error());
  }
  countKeys(): Promise<number> {
    return Promise.reject(this.error());
  }
  listKeys(): Promise<KeyRecord[]> {
    return Promise.reject(this.error());
  }
  replaceKey(): Promise<boolean> {
    return Promise.reject(this.error());
  }
  replaceKeysWithAudit(): Promise<KeyRecord[]> {
    return Promise.reject(this.error());
  }
  insertKeysWithAudit(): Promise<InsertOutcome[]> {
    return Promise.reject(this.error());
  }
  ping(): Promise<void> {
    return Promise.reject(this.error());
  }
  async close(): Promise<void> {}
}
