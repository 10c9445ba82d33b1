// SQL run on a test database behind the store's back, as someone with write access to it would.
// Placeholders are PostgreSQL's $1, $2 …; for SQLite they become ?, in the same order.
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';

export type Tamper = (sql: string, values?: Array<string | number | Buffer | null>) => Promise<void>;

export function sqliteTamper(file: string): Tamper {
  return async (sql, values = []) => {
    const db = new DatabaseSync(file);
    try {
      db.prepare(sql.replace(/\$\d+/g, '?')).run(...values);
    } finally {
      db.close();
    }
  };
}

export function postgresTamper(url: () => string): Tamper {
  return async (sql, values = []) => {
    const client = new pg.Client({ connectionString: url() });
    await client.connect();
    try {
      await client.query(sql, values);
    } finally {
      await client.end();
    }
  };
}
