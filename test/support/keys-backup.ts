// Helpers for the `keys export/import/verify` tests: key values for tokens that hold copies of one
// key (ownToken with MASTER_KEY_VALUE / INTEGRITY_KEY_VALUE, as a replacement HSM would), the
// export file read and rewritten as someone who can write it would, a whole dump of a store.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';

/** A fresh random key value, hex, for MASTER_KEY_VALUE / INTEGRITY_KEY_VALUE. */
export const keyValue = () => randomBytes(32).toString('hex');

export interface ExportFile {
  header: Record<string, any>;
  rows: Array<Record<string, any>>;
  trailer: Record<string, any>;
}

export function readExport(file: string): ExportFile {
  const lines = readFileSync(file, 'utf8').split('\n');
  if (lines.pop() !== '') throw new Error(`${file} does not end with a newline`);
  return { header: JSON.parse(lines[0]!), rows: lines.slice(1, -1).map((l) => JSON.parse(l)), trailer: JSON.parse(lines.at(-1)!) };
}

/** The checksum the trailer should hold for these lines (each with its newline). */
export function checksumOf(lines: string[]): string {
  const h = createHash('sha256');
  for (const line of lines) h.update(`${line}\n`);
  return h.digest('hex');
}

/** Writes an export with `edit` applied to its rows and a correct checksum, as someone who can write the file could. */
export function rewriteExport(from: string, to: string, edit: (rows: Array<Record<string, any>>) => void): void {
  const { header, rows } = readExport(from);
  edit(rows);
  const lines = [JSON.stringify(header), ...rows.map((r) => JSON.stringify(r))];
  writeFileSync(to, [...lines, JSON.stringify({ rows: rows.length, checksum: checksumOf(lines) })].map((l) => `${l}\n`).join(''), { mode: 0o600 });
}

/** Every row of the keys and audit tables, every column, bytes as hex: equal dumps mean an unchanged store. */
export async function dumpStore(kind: 'sqlite' | 'postgres', where: string): Promise<string> {
  const queries = ['SELECT * FROM keys ORDER BY key_id', 'SELECT * FROM audit_records ORDER BY chain, seq'];
  const show = (rows: Array<Record<string, unknown>>) =>
    JSON.stringify(rows, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v && typeof v === 'object' && v.type === 'Buffer' ? Buffer.from(v.data).toString('hex') : v));
  if (kind === 'sqlite') {
    const db = new DatabaseSync(where, { readOnly: true });
    try {
      return queries.map((q) => show(db.prepare(q).all() as Array<Record<string, unknown>>)).join('\n');
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: where });
  await client.connect();
  try {
    const out: string[] = [];
    for (const q of queries) out.push(show((await client.query(q)).rows));
    return out.join('\n');
  } finally {
    await client.end();
  }
}
