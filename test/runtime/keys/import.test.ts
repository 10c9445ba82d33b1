// `keys import` refusing what it must, on both stores, with the built driver and the test token:
// a keyId stored with other key material refuses the whole import and leaves the store exactly
// as it was; a damaged or cut export is refused before any row is written; unsealed rows come
// in unsealed with a warning, or sealed here with --reseal; Ctrl-C while checking writes nothing.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Hsm } from '../../../runtime/hsm/hsm.js';
import { openSqliteStore } from '../../../runtime/store/sqlite.js';
import { useCli } from '../../support/cli.js';
import { openTestHsm } from '../../support/hsm.js';
import { dumpStore, readExport } from '../../support/keys-backup.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { sqliteTamper } from '../../support/tamper.js';

const cli = useCli();
const pgUrl = usePostgresDatabase();
const pgUrl2 = usePostgresDatabase();

/** A SQLite store holding these keys, and its export. */
function source(keyIds: string[], algorithm = 'ecdsa-p256'): { store: string[]; file: string } {
  const store = cli.sqlite();
  for (const keyId of keyIds) expect(cli.job('keygen', { keyId, algorithm }, { store }).output).toMatchObject({ keyId });
  const file = cli.path('export.jsonl');
  expect(cli.run(['keys', 'export', ...store, '--out', file]).status).toBe(0);
  return { store, file };
}

let pgCount = 0;
/** An empty target of each kind (PostgreSQL: its own schema-less database is shared, so keyIds carry a prefix). */
const targets = {
  sqlite: () => {
    const store = cli.sqlite();
    return { store, dump: () => dumpStore('sqlite', store[1]!), prefix: '' };
  },
  postgres: () => {
    const store = ['--postgres-url', pgUrl()];
    return { store, dump: () => dumpStore('postgres', pgUrl()), prefix: `pg${++pgCount}.` };
  },
};

describe.each(['sqlite', 'postgres'] as const)('keys import into %s', (kind) => {
  it('refuses a keyId stored with other content, reports it, and leaves the target unchanged', async () => {
    const target = targets[kind]();
    const [a, b, c] = ['a', 'b', 'c'].map((k) => `${target.prefix}conflict.${k}`);
    const { file } = source([a!, b!]);
    // The target made its own key under the name `a`, and one the export lacks.
    for (const keyId of [a!, c!]) expect(cli.job('keygen', { keyId, algorithm: 'ecdsa-p256' }, { store: target.store }).output).toBeDefined();
    const before = await target.dump();

    const res = cli.run(['keys', 'import', file, ...target.store]);
    expect(res.status).toBe(1);
    expect(res.stdout).toContain(`CONFLICT ${a}: stored with other key material (publicKeyDer, wrappedKey); never overwritten`);
    expect(res.stdout).not.toContain(`CONFLICT ${b}`);
    expect(res.stdout).toContain('keys import: refused, nothing written: 1 conflicts, 0 rows refused');
    expect(await target.dump()).toBe(before);
  });

  it('refuses a damaged or cut export before writing any row', async () => {
    const target = targets[kind]();
    const { file } = source([`${target.prefix}damaged.1`, `${target.prefix}damaged.2`]);
    expect(cli.job('keygen', { keyId: `${target.prefix}damaged.theirs`, algorithm: 'ecdsa-p256' }, { store: target.store }).output).toBeDefined();
    const before = await target.dump();

    // One base64 character of the last row changed: still valid JSON and base64, so only the checksum can tell.
    const damaged = cli.path('damaged.jsonl');
    const lines = readFileSync(file, 'utf8').split('\n');
    const row = lines.at(-3)!;
    const at = row.indexOf('"wrappedKey":"') + 20;
    lines[lines.length - 3] = row.slice(0, at) + (row[at] === 'A' ? 'B' : 'A') + row.slice(at + 1);
    writeFileSync(damaged, lines.join('\n'));
    const refused = cli.run(['keys', 'import', damaged, ...target.store]);
    expect(refused.status).toBe(1);
    expect(refused.stdout).toContain('refused, nothing imported: checksum mismatch');

    const cut = cli.path('cut.jsonl');
    writeFileSync(cut, readFileSync(file, 'utf8').split('\n').slice(0, -2).join('\n') + '\n');
    const short = cli.run(['keys', 'import', cut, ...target.store]);
    expect(short.status).toBe(1);
    expect(short.stdout).toContain('refused, nothing imported: the file does not end with its checksum line');

    expect(await target.dump()).toBe(before);
    expect(cli.run(['keys', 'import', file, ...target.store]).status).toBe(0);
  });

  it('imports unsealed rows unsealed with a warning, or sealed here with --reseal', async () => {
    const ids = [`${kind}.old.1`, `${kind}.old.2`];
    const { store, file: sealedFile } = source(ids, 'ecdsa-secp256k1');
    expect(readExport(sealedFile).header.counts.sealed).toBe(2);
    await sqliteTamper(store[1]!)('UPDATE keys SET seal = NULL');
    const file = cli.path('unsealed.jsonl');
    expect(cli.run(['keys', 'export', ...store, '--out', file]).stdout).toContain('(0 sealed, 2 unsealed;');

    const plain = targets[kind]();
    const asIs = cli.run(['keys', 'import', file, ...plain.store]);
    expect(asIs.status).toBe(0);
    expect(asIs.stdout).toContain('warning: 2 rows imported unsealed, as exported');
    const sign = { keyId: ids[0], data: '22'.repeat(32), encoding: 'digest' };
    expect(cli.job('sign', sign, { store: [...plain.store, '--require-sealed-rows'] }).error?.code).toBe('KEY_INTEGRITY');

    const other = kind === 'sqlite' ? targets.sqlite() : { store: ['--postgres-url', pgUrl2()] };
    const resealed = cli.run(['keys', 'import', file, ...other.store, '--reseal']);
    expect(resealed.status).toBe(0);
    expect(resealed.stdout).toContain('2 rows imported (2 resealed here, 0 unsealed)');
    expect(cli.job('sign', sign, { store: [...other.store, '--require-sealed-rows'] }).output?.signature).toMatch(/^[0-9a-f]{128}$/);
  });
});

describe('keys import stopped by Ctrl-C', () => {
  const COUNT = 1500;
  let file: string;
  let hsm: Hsm;
  beforeAll(async () => {
    const store = cli.sqlite();
    hsm = await openTestHsm();
    const db = await openSqliteStore(store[1]!);
    try {
      for (let i = 0; i < COUNT; i++) {
        const keyId = `bulk.${String(i).padStart(4, '0')}`;
        await db.insertIfAbsent({ keyId, algorithm: 'ecdsa-p256', ...(await hsm.generate('ecdsa-p256', keyId)), createdAt: new Date() });
      }
    } finally {
      await db.close();
    }
    file = cli.path('bulk.jsonl');
    expect(cli.run(['keys', 'export', ...store, '--out', file]).status).toBe(0);
  }, 120_000);
  afterAll(async () => {
    await hsm?.close();
  });

  it('stops between batches, before writing or with whole batches written, and says to run it again', async () => {
    const target = cli.sqlite();
    expect(cli.job('keygen', { keyId: 'bulk.theirs', algorithm: 'ecdsa-p256' }, { store: target }).output).toBeDefined();
    const before = await dumpStore('sqlite', target[1]!);
    const run = cli.start(['keys', 'import', file, ...target]);
    await run.waitForStderr((l) => l.includes('"command":"keys import (check)"') && l.includes('"done":0'));
    run.proc.kill('SIGINT');
    const res = await run.exited;
    expect(res.status).toBe(130);
    // Where it stopped depends on when the signal landed; either way between batches.
    let written = 0;
    if (res.stdout.includes('keys import: stopped while checking, before writing anything: run it again')) {
      expect(await dumpStore('sqlite', target[1]!)).toBe(before);
    } else {
      const stopped = /keys import: stopped after (\d+) rows were written: run the same command again \(rows already imported are skipped\)/.exec(res.stdout);
      expect(stopped, res.stdout).not.toBeNull();
      written = Number(stopped![1]);
      expect(written % 500).toBe(0);
      expect(written).toBeLessThan(COUNT);
    }

    const again = cli.run(['keys', 'import', file, ...target]);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain(`keys import: ${COUNT - written} rows imported (0 resealed here, 0 unsealed), ${written} identical skipped`);
  });
});
