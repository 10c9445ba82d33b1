// A key store that lives in memory, for `hsm test`: the self-test runs the real handlers
// without writing throwaway keys into the operator's database.
import type { AuditRecord } from '../audit/record.js';
import type { AuditLog, AuditQuery, InsertOutcome, KeyRecord, WrappedKeyStore } from './store.js';

export class MemoryStore implements WrappedKeyStore {
  readonly kind = 'sqlite' as const;
  private readonly rows = new Map<string, KeyRecord>();
  readonly audit = new MemoryAuditLog();

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

  async listKeys(afterKeyId: string, limit: number): Promise<KeyRecord[]> {
    return [...this.rows.values()].filter((r) => r.keyId > afterKeyId).sort((a, b) => (a.keyId < b.keyId ? -1 : 1)).slice(0, limit);
  }

  async replaceKey(expected: KeyRecord, next: KeyRecord): Promise<boolean> {
    if (this.rows.get(expected.keyId) !== expected) return false;
    this.rows.set(expected.keyId, next);
    return true;
  }

  async replaceKeysWithAudit(changes: ReadonlyArray<{ expected: KeyRecord; next: KeyRecord }>, recordsFor: (replaced: KeyRecord[]) => Promise<AuditRecord[]>): Promise<KeyRecord[]> {
    const replaced = changes.filter((c) => this.rows.get(c.expected.keyId) === c.expected).map((c) => c.next);
    await this.audit.append(await recordsFor(replaced));
    for (const r of replaced) this.rows.set(r.keyId, r);
    return replaced;
  }

  async insertKeysWithAudit(rows: readonly KeyRecord[], recordsFor: (inserted: KeyRecord[]) => Promise<AuditRecord[]>): Promise<InsertOutcome[]> {
    const outcomes = rows.map((r) => ({ stored: this.rows.get(r.keyId) ?? r, inserted: !this.rows.has(r.keyId) }));
    await this.audit.append(await recordsFor(outcomes.filter((o) => o.inserted).map((o) => o.stored)));
    for (const o of outcomes) if (o.inserted) this.rows.set(o.stored.keyId, o.stored);
    return outcomes;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.rows.clear();
  }

  all(): KeyRecord[] {
    return [...this.rows.values()];
  }
}

class MemoryAuditLog implements AuditLog {
  private readonly records: AuditRecord[] = [];
  async append(records: readonly AuditRecord[]): Promise<void> {
    this.records.push(...records);
  }
  async head(chain: string): Promise<{ seq: number; hash: Buffer } | undefined> {
    return this.records.findLast((r) => r.chain === chain);
  }
  async chains(): Promise<string[]> {
    return [...new Set(this.records.map((r) => r.chain))].sort();
  }
  async read(q: AuditQuery): Promise<AuditRecord[]> {
    return this.records
      .filter((r) => r.chain === q.chain && r.seq > q.afterSeq && (!q.since || r.at >= q.since) && (q.keyId === undefined || r.keyId === q.keyId))
      .slice(0, q.limit);
  }
}
