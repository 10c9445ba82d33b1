// A key store that lives in memory, for `hsm test`: the self-test runs the real handlers
// without writing throwaway keys into the operator's database.
import type { InsertOutcome, KeyRecord, WrappedKeyStore } from './store.js';

export class MemoryStore implements WrappedKeyStore {
  readonly kind = 'sqlite' as const;
  private readonly rows = new Map<string, KeyRecord>();

  async get(keyId: string): Promise<KeyRecord | undefined> {
    return this.rows.get(keyId);
  }

  async insertIfAbsent(record: KeyRecord): Promise<InsertOutcome> {
    const existing = this.rows.get(record.keyId);
    if (existing) return { stored: existing, inserted: false };
    this.rows.set(record.keyId, record);
    return { stored: record, inserted: true };
  }

  async countKeys(): Promise<number> {
    return this.rows.size;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.rows.clear();
  }

  all(): KeyRecord[] {
    return [...this.rows.values()];
  }
}
