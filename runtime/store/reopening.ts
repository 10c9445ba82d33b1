// A store for the long-running driver: if the database cannot be opened at start, every call
// (and the readiness gate's ping) tries again, so the driver recovers by itself. A ConfigError
// (bad URL, a schema newer than ours) stays fatal: retrying cannot fix it.
import type { Logger } from 'pino';
import { ConfigError, DatabaseError, DriverError } from '../errors.js';
import { openStore, type StoreOptions } from './index.js';
import type { AuditLog, InsertOutcome, KeyRecord, WrappedKeyStore } from './store.js';
import { storeKind } from './unavailable.js';

export class ReopeningStore implements WrappedKeyStore {
  readonly kind: 'sqlite' | 'postgres';
  private inner: WrappedKeyStore | undefined;
  private opening: Promise<WrappedKeyStore> | undefined;

  private constructor(private readonly options: StoreOptions) {
    this.kind = storeKind(options);
  }

  /** Opens now if it can; throws only for configuration errors. */
  static async start(options: StoreOptions, log: Logger): Promise<ReopeningStore> {
    const store = new ReopeningStore(options);
    try {
      await store.current();
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      log.error({ reason: (err as Error).message }, 'database unavailable at start; will keep trying');
    }
    return store;
  }

  private current(): Promise<WrappedKeyStore> {
    if (this.inner) return Promise.resolve(this.inner);
    this.opening ??= openStore(this.options)
      .then((store) => {
        this.inner = store;
        return store;
      })
      .catch((err: unknown) => {
        if (err instanceof ConfigError || err instanceof DriverError) throw err;
        throw new DatabaseError('DATABASE_UNAVAILABLE', 'database cannot be opened');
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  async get(keyId: string): Promise<KeyRecord | undefined> {
    return (await this.current()).get(keyId);
  }
  async insertIfAbsent(record: KeyRecord): Promise<InsertOutcome> {
    return (await this.current()).insertIfAbsent(record);
  }
  async countKeys(): Promise<number> {
    return (await this.current()).countKeys();
  }
  async listKeys(afterKeyId: string, limit: number): Promise<KeyRecord[]> {
    return (await this.current()).listKeys(afterKeyId, limit);
  }
  async replaceKey(expected: KeyRecord, next: KeyRecord): Promise<boolean> {
    return (await this.current()).replaceKey(expected, next);
  }
  async replaceKeysWithAudit(...args: Parameters<WrappedKeyStore['replaceKeysWithAudit']>): Promise<KeyRecord[]> {
    return (await this.current()).replaceKeysWithAudit(...args);
  }
  async insertKeysWithAudit(...args: Parameters<WrappedKeyStore['insertKeysWithAudit']>): Promise<InsertOutcome[]> {
    return (await this.current()).insertKeysWithAudit(...args);
  }
  async ping(): Promise<void> {
    return (await this.current()).ping();
  }
  readonly audit: AuditLog = {
    append: async (records) => (await this.current()).audit.append(records),
    head: async (chain) => (await this.current()).audit.head(chain),
    chains: async () => (await this.current()).audit.chains(),
    read: async (query) => (await this.current()).audit.read(query),
  };
  async close(): Promise<void> {
    await this.inner?.close();
    this.inner = undefined;
  }
}
