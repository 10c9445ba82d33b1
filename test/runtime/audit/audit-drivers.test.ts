// The audit trail end to end: two `hsm-driver run` processes with their own certificates on one
// PostgreSQL database append 1,000 records between them; `hsm-driver audit verify` checks every
// chain and seal inside the HSM, `audit export` filters, and a record edited afterwards is named.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { expect, test } from 'vitest';
import { useCli } from '../../support/cli.js';
import { spawnDriverPair, stateIs, useRunFixture } from '../../support/driver.js';
import { usePostgresDatabase } from '../../support/postgres.js';

const fx = useRunFixture('audit-drivers', ['driver-a', 'driver-b']);
const pgUrl = usePostgresDatabase();
const cli = useCli();

test('two drivers append 1,000 records to one PostgreSQL database; verify passes, export filters, an edit is named', async () => {
  const server = fx.server;
  const drivers = (fx.drivers = spawnDriverPair({ pki: fx.pki, proxyAddr: server.proxyAddr, sqlitePath: fx.freshDb(), postgresUrl: pgUrl(), args: ['--concurrency', '4', '--sessions', '2'], env: { LOG_LEVEL: 'info' } }));
  await Promise.all(drivers.map((d) => d.waitForLog(stateIs('running'))));

  const keyIds = Array.from({ length: 10 }, (_, i) => `audit.${i}`);
  const keygens = keyIds.map((keyId) => server.enqueue('keygen', { keyId, algorithm: 'ecdsa-secp256k1' }));
  await Promise.all(keygens.map((id) => server.waitForCompletion(id, 60_000)));
  // 980 signs, and 10 for a key that does not exist: failures are audited too.
  const signs = Array.from({ length: 990 }, (_, i) =>
    server.enqueue('sign', { keyId: i < 980 ? keyIds[i % keyIds.length] : 'audit.absent', data: (i % 256).toString(16).padStart(2, '0').repeat(32), encoding: 'digest' }),
  );
  const done = await Promise.all(signs.map((id) => server.waitForCompletion(id, 120_000)));
  expect(done.filter((j) => j.result === undefined).map((j) => (j.error as { code?: string } | undefined)?.code)).toEqual(Array(10).fill('KEY_NOT_FOUND'));
  expect(new Set(done.map((j) => j.leasedBy))).toEqual(new Set(['driver-a', 'driver-b']));

  const store = ['--postgres-url', pgUrl()];
  const verify = cli.run(['audit', 'verify', ...store]);
  expect(verify.stderr).toBe('');
  expect(verify.status).toBe(0);
  expect(verify.stdout).toContain('audit verify: 1000 records in 2 chains, every chain and seal good');

  // Export: every record once, each naming the driver (its certificate) that wrote it.
  const out = cli.path('audit.jsonl');
  expect(cli.run(['audit', 'export', ...store, '--out', out]).status).toBe(0);
  const records = readFileSync(out, 'utf8').trim().split('\n').map((line) => JSON.parse(line));
  expect(records).toHaveLength(1000);
  expect(new Set(records.map((r) => r.jobId)).size).toBe(1000);
  const fingerprints = new Set(records.map((r) => r.driverFingerprint));
  expect(fingerprints.size).toBe(2);
  expect(new Set(records.map((r) => r.driverSubject.match(/CN=(driver-[ab])/)?.[1]))).toEqual(new Set(['driver-a', 'driver-b']));
  expect(records.filter((r) => r.code === 'KEY_NOT_FOUND')).toHaveLength(10);
  // An export never overwrites.
  expect(cli.run(['audit', 'export', ...store, '--out', out]).status).toBe(2);

  const forKey = cli.run(['audit', 'export', ...store, '--key-id', 'audit.3']);
  const lines = forKey.stdout.trim().split('\n').map((line) => JSON.parse(line));
  expect(lines).toHaveLength(1 + 98);
  expect(new Set(lines.map((r) => r.keyId))).toEqual(new Set(['audit.3']));
  expect(cli.run(['audit', 'export', ...store, '--since', '2999-01-01']).stdout).toBe('');
  expect(cli.run(['audit', 'export', ...store, '--since', 'yesterday']).stderr).toContain('--since must be a date');

  // Someone with write access hides which key signed one job: verify names that record.
  const victim = records.find((r) => r.kind === 'sign' && r.keyId === 'audit.5')!;
  const client = new pg.Client({ connectionString: pgUrl() });
  await client.connect();
  await client.query('UPDATE audit_records SET key_id = $1 WHERE chain = $2 AND seq = $3', ['audit.6', victim.chain, victim.seq]);
  await client.end();
  const caught = cli.run(['audit', 'verify', ...store]);
  expect(caught.status).toBe(1);
  expect(caught.stdout).toContain(`chain ${victim.chain}: BAD record seq ${victim.seq} (job ${victim.jobId}): its hash does not match its content: edited`);
  expect(caught.stdout).toContain('audit verify: 1 of 2 chains have a bad record');
});
