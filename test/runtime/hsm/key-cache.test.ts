// The opt-in cache of unwrapped keys against the real SoftHSM2 token: hits skip the unwrap, and
// every kept object is destroyed on eviction, expiry, error and shutdown: the session-object
// leak test holds with the cache on.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Algorithm } from '../../../runtime/crypto/algorithms.js';
import type { Hsm } from '../../../runtime/hsm/hsm.js';
import { SessionKeyCache } from '../../../runtime/hsm/key-cache.js';
import { destroyObject } from '../../../runtime/hsm/keys.js';
import type { KeyRecord } from '../../../runtime/store/store.js';
import { openTestHsm } from '../../support/hsm.js';

const digest = createHash('sha256').update('cache').digest();
const SIZE = 3;
const SESSIONS = 2;

let hsm: Hsm;
let baseline = 0;
beforeAll(async () => {
  hsm = await openTestHsm({ sessions: String(SESSIONS), 'key-cache-size': String(SIZE), 'key-cache-ttl': '2' });
  baseline = await hsm.countSessionObjects();
});
afterAll(async () => {
  await hsm?.close();
});

async function record(keyId: string, algorithm: Algorithm = 'ecdsa-p256'): Promise<KeyRecord> {
  return { keyId, algorithm, ...(await hsm.generate(algorithm, keyId)), createdAt: new Date() };
}
const signWith = (r: KeyRecord) => hsm.sign(r, { kind: 'ecdsa', digest });
const kept = async () => (await hsm.countSessionObjects()) - baseline;

describe('the key cache on a real token', () => {
  test('repeated signs of one key hit the cache; at most size keys per session are kept', async () => {
    const a = await record('cache.a');
    const before = { ...hsm.keyCacheStats };
    for (let i = 0; i < 10; i++) expect(await signWith(a)).toHaveLength(64);
    const hits = hsm.keyCacheStats.hits - before.hits;
    expect(hits).toBeGreaterThanOrEqual(10 - SESSIONS); // one miss per session at most
    expect(await kept()).toBeLessThanOrEqual(SESSIONS);

    const others = await Promise.all(['cache.b', 'cache.c', 'cache.d', 'cache.e'].map((id) => record(id)));
    for (const r of others) await signWith(r);
    expect(await kept()).toBeLessThanOrEqual(SIZE * SESSIONS);
  });

  test('a changed row (new blob) is not served the old key', async () => {
    const a = await record('cache.rotate');
    await signWith(a);
    const again = await record('cache.rotate2');
    // Same keyId, another key's blob and public key: a different cache entry, and its own signature.
    const moved = { ...again, keyId: a.keyId };
    moved.seal = (await hsm.sealRows([moved]))[0]!; // sealed, as a rewrap would: only the cache is under test
    const misses = hsm.keyCacheStats.misses;
    await signWith(moved);
    expect(hsm.keyCacheStats.misses).toBe(misses + 1);
  });

  test('1,000 signs and failed unwraps leave nothing but the kept keys, and expiry destroys those', async () => {
    const r = await record('cache.leak');
    const signs = Array.from({ length: 1000 }, () => signWith(r));
    expect((await Promise.all(signs)).every((s) => s.length === 64)).toBe(true);
    const tampered = { ...r, keyId: 'cache.tampered', wrappedKey: Buffer.from(r.wrappedKey!).fill(7, 10, 12) };
    // Sealed as it is, so that each sign gets as far as a failing unwrap (the case under test).
    tampered.seal = (await hsm.sealRows([tampered]))[0]!;
    for (let i = 0; i < 20; i++) await expect(signWith(tampered)).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    expect(await kept()).toBeLessThanOrEqual(SIZE * SESSIONS);
    // TTL 2 s; idle sessions are swept every second.
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    expect(await kept()).toBe(0);
  });

  test('a kept key destroyed behind the cache (a token reset, a logout) is replaced, not an error', async () => {
    const r = await record('cache.stale');
    await signWith(r);
    // Destroy every session object the cache holds, as a token that dropped them would.
    await hsm.pool.use(async (s) => {
      const lib = hsm.library.lib;
      lib.C_FindObjectsInit(s, [{ type: 0x1 /* CKA_TOKEN */, value: false }, { type: 0x0 /* CKA_CLASS */, value: 3 /* CKO_PRIVATE_KEY */ }]);
      const objects = lib.C_FindObjects(s, 1000);
      lib.C_FindObjectsFinal(s);
      for (const h of objects) destroyObject(lib, s, h);
    });
    for (let i = 0; i < 4; i++) expect(await signWith(r)).toHaveLength(64);
  });
});

describe('SessionKeyCache', () => {
  const handle = (n: number) => Buffer.of(n);
  test('evicts the least recently used, expires by time, and destroys what it drops', () => {
    const destroyed: number[] = [];
    const cache = new SessionKeyCache({ size: 2, ttlMs: 1000 }, (h) => destroyed.push(h[0]!));
    cache.keep('a', handle(1), 0);
    cache.keep('b', handle(2), 0);
    expect(cache.take('a', 10)).toEqual(handle(1)); // taken out while in use
    cache.keep('a', handle(1), 10); // a is now the most recent
    cache.keep('c', handle(3), 20); // evicts b
    expect(destroyed).toEqual([2]);
    expect(cache.take('b', 20)).toBeUndefined();
    expect(cache.take('a', 2000)).toBeUndefined(); // expired: destroyed, not returned
    expect(destroyed).toEqual([2, 1]);
    cache.purgeExpired(5000);
    expect(destroyed).toEqual([2, 1, 3]);
    expect(cache.size).toBe(0);
  });
});
