// The audit trail's SQL on PostgreSQL. Each driver appends to its own chain, so drivers sharing
// the database never contend for a row or a lock here.
import type pg from 'pg';
import type { AuditRecord } from '../audit/record.js';
import { AUDIT_COLUMNS, auditRecordOf, auditRowValues } from './migrations.js';
import type { AuditLog, AuditQuery } from './store.js';

type Query = (action: string, text: string, values: unknown[]) => Promise<pg.QueryResult>;

export class PostgresAuditLog implements AuditLog {
  /** `query` is the store's: it maps failures (connection lost → DATABASE_UNAVAILABLE) and redacts the password. */
  constructor(private readonly query: Query) {}

  async append(records: readonly AuditRecord[]): Promise<void> {
    if (records.length === 0) return;
    // One INSERT with a row per record: a single statement is its own transaction, all or nothing.
    const { text, values } = insertStatement(records);
    await this.query('audit append', text, values);
  }

  async head(chain: string): Promise<{ seq: number; hash: Buffer } | undefined> {
    const { rows } = await this.query('audit read', 'SELECT seq, hash FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1', [chain]);
    return rows[0] === undefined ? undefined : { seq: Number(rows[0].seq), hash: rows[0].hash as Buffer };
  }

  async chains(): Promise<string[]> {
    const { rows } = await this.query('audit read', 'SELECT DISTINCT chain FROM audit_records ORDER BY chain', []);
    return rows.map((r) => String(r.chain));
  }

  async read(q: AuditQuery): Promise<AuditRecord[]> {
    const where = ['chain = $1', 'seq > $2'];
    const values: unknown[] = [q.chain, q.afterSeq];
    if (q.since) where.push(`at >= $${values.push(q.since)}`);
    if (q.keyId !== undefined) where.push(`key_id = $${values.push(q.keyId)}`);
    const { rows } = await this.query('audit read', `SELECT ${AUDIT_COLUMNS} FROM audit_records WHERE ${where.join(' AND ')} ORDER BY seq LIMIT $${values.push(q.limit)}`, values);
    return rows.map((row) => auditRecordOf(row));
  }
}

/** One INSERT of every record (at most a few hundred: 16 parameters each). */
export function insertStatement(records: readonly AuditRecord[]): { text: string; values: unknown[] } {
  const values: unknown[] = [];
  const rows = records.map((r) => {
    const row = auditRowValues(r, 'postgres');
    const first = values.length;
    values.push(...row);
    return `(${row.map((_, i) => `$${first + i + 1}`).join(', ')})`;
  });
  return { text: `INSERT INTO audit_records (${AUDIT_COLUMNS}) VALUES ${rows.join(', ')}`, values };
}
