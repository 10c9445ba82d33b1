// The audit trail's SQL on SQLite.
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { AuditRecord } from '../audit/record.js';
import { AUDIT_COLUMNS, auditRecordOf, auditRowValues } from './migrations.js';
import type { AuditLog, AuditQuery } from './store.js';

export class SqliteAuditLog implements AuditLog {
  private readonly insert: StatementSync;
  private readonly selectHead: StatementSync;

  constructor(
    private readonly db: DatabaseSync,
    /** The store's error mapping (locked, full, read-only → DATABASE_UNAVAILABLE). */
    private readonly run: <T>(action: string, fn: () => T) => T,
  ) {
    this.insert = db.prepare(`INSERT INTO audit_records (${AUDIT_COLUMNS}) VALUES (${Array(16).fill('?').join(', ')})`);
    this.selectHead = db.prepare('SELECT seq, hash FROM audit_records WHERE chain = ? ORDER BY seq DESC LIMIT 1');
  }

  async append(records: readonly AuditRecord[]): Promise<void> {
    this.run('audit append', () => {
      // IMMEDIATE: take the write lock now, so another process's writer cannot make us fail halfway.
      this.db.exec('BEGIN IMMEDIATE');
      try {
        this.insertAll(records);
        this.db.exec('COMMIT');
      } catch (err) {
        if (this.db.isTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  /** Inserts inside the caller's transaction. */
  insertAll(records: readonly AuditRecord[]): void {
    for (const r of records) this.insert.run(...auditRowValues(r, 'sqlite'));
  }

  async head(chain: string): Promise<{ seq: number; hash: Buffer } | undefined> {
    return this.run('audit read', () => {
      const row = this.selectHead.get(chain);
      return row === undefined ? undefined : { seq: Number(row.seq), hash: Buffer.from(row.hash as Uint8Array) };
    });
  }

  async chains(): Promise<string[]> {
    return this.run('audit read', () => this.db.prepare('SELECT DISTINCT chain FROM audit_records ORDER BY chain').all().map((r) => String(r.chain)));
  }

  async read(q: AuditQuery): Promise<AuditRecord[]> {
    const where = ['chain = ?', 'seq > ?'];
    const values: Array<string | number> = [q.chain, q.afterSeq];
    if (q.since) (where.push('at >= ?'), values.push(q.since.toISOString()));
    if (q.keyId !== undefined) (where.push('key_id = ?'), values.push(q.keyId));
    return this.run('audit read', () =>
      this.db
        .prepare(`SELECT ${AUDIT_COLUMNS} FROM audit_records WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`)
        .all(...values, q.limit)
        .map((row) => auditRecordOf(row)),
    );
  }
}
