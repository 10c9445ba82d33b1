// The migration list's own rules: numbered 1..n in order, and a newer database refused.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../runtime/errors.js';
import {
  LATEST_VERSION,
  MIGRATIONS,
  migrationSql,
  pendingMigrations,
} from '../../../runtime/store/migrations.js';

describe('migrations', () => {
  it('are numbered 1, 2, 3 … with LATEST_VERSION the last', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    expect(LATEST_VERSION).toBe(MIGRATIONS.length);
  });

  it('have SQL for both dialects', () => {
    for (const migration of MIGRATIONS) {
      expect(migrationSql(migration, 'sqlite')).toMatch(/\S/);
      expect(migrationSql(migration, 'postgres')).toMatch(/\S/);
    }
  });

  it('leave only the versions past the current one pending', () => {
    expect(pendingMigrations(0, 'db')).toEqual(MIGRATIONS);
    expect(pendingMigrations(LATEST_VERSION, 'db')).toEqual([]);
  });

  it('refuse a schema newer than this driver knows, in one line naming both versions', () => {
    const attempt = () => pendingMigrations(LATEST_VERSION + 1, '/var/lib/keys.db');
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(
      `database /var/lib/keys.db has schema version ${LATEST_VERSION + 1}, newer than version ${LATEST_VERSION} that this driver knows; upgrade the driver`,
    );
  });
});
