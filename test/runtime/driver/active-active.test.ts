// Two `hsm-driver run` processes, active-active on one PostgreSQL database and one queue: both
// take work, and a keygen delivered twice (to either driver) yields one key.
import { expect, test } from 'vitest';
import { spawnDriverPair, stateIs, useRunFixture } from '../../support/driver.js';
import { usePostgresDatabase } from '../../support/postgres.js';

const fx = useRunFixture('active-active', ['driver-a', 'driver-b']);
const pgUrl = usePostgresDatabase();

test('two drivers share the queue and the database; duplicate keygens give one key', async () => {
  const server = fx.server;
  const drivers = (fx.drivers = spawnDriverPair({ pki: fx.pki, proxyAddr: server.proxyAddr, sqlitePath: fx.freshDb(), postgresUrl: pgUrl(), args: ['--concurrency', '2', '--sessions', '2'] }));
  await Promise.all(drivers.map((d) => d.waitForLog(stateIs('running'))));

  const algorithms = ['ecdsa-secp256k1', 'ecdsa-p256', 'eddsa-ed25519', 'rsa-2048'];
  const keyIds = Array.from({ length: 12 }, (_, i) => `aa.${i}`);
  // Every keygen twice, interleaved, so both drivers race for the same keyIds.
  const keygens = [...keyIds, ...keyIds].map((keyId, i) => ({ keyId, id: server.enqueue('keygen', { keyId, algorithm: algorithms[i % 12 % algorithms.length] }) }));
  const done = await Promise.all(keygens.map((k) => server.waitForCompletion(k.id, 60_000)));
  for (const keyId of keyIds) {
    const results = done.filter((_, i) => keygens[i]!.keyId === keyId).map((j) => j.result);
    expect(results).toHaveLength(2);
    expect(results[0]).toBeDefined();
    expect(results[1]).toEqual(results[0]);
  }
  const signs = keyIds.map((keyId, i) => {
    const ecdsa = algorithms[i % algorithms.length]!.startsWith('ecdsa');
    const input = ecdsa ? { keyId, data: '44'.repeat(32), encoding: 'digest' } : { keyId, data: '4444', encoding: 'message', ...(algorithms[i % algorithms.length] === 'rsa-2048' ? { hash: 'sha256' } : {}) };
    return server.enqueue('sign', input);
  });
  const signed = await Promise.all(signs.map((id) => server.waitForCompletion(id, 60_000)));
  expect(signed.filter((j) => j.result === undefined).map((j) => [j.input, j.error])).toEqual([]);
  const takers = new Set([...done, ...signed].map((j) => j.leasedBy));
  expect(takers).toEqual(new Set(['driver-a', 'driver-b']));
});
