// The PKCS#11 layer against a real SoftHSM2 token: key posture, cleanup, probing, resident keys.
// One Hsm per test file: login state and C_Finalize are process-wide in PKCS#11.
import { createHash } from 'node:crypto';
import * as pkcs11 from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Algorithm } from '../../../runtime/crypto/algorithms.js';
import { Hsm } from '../../../runtime/hsm/hsm.js';
import { unwrapIntoSession, wrapKey, generateKeyPair, destroyObject, findObjects } from '../../../runtime/hsm/keys.js';
import { masterKeyQuery } from '../../../runtime/hsm/templates.js';
import { wrapMechanismId } from '../../../runtime/hsm/mechanisms.js';
import type { KeyRecord } from '../../../runtime/store/store.js';
import { openTestHsm } from '../../support/hsm.js';

let hsm: Hsm;
beforeAll(async () => {
  hsm = await openTestHsm({ 'resident-algorithms': 'eddsa-ed25519' });
});
afterAll(async () => {
  await hsm?.close();
});

function recordOf(keyId: string, algorithm: Algorithm, key: Awaited<ReturnType<Hsm['generate']>>): KeyRecord {
  return { keyId, algorithm, ...key, createdAt: new Date() };
}

const bool = (attr: pkcs11.Attribute | undefined) => (attr?.value as Buffer)[0] === 1;

describe('key posture', () => {
  test('an unwrapped key is sensitive, non-extractable and sign-only, and cannot be wrapped out', async () => {
    await hsm.pool.use(async (s) => {
      const lib = hsm.library.lib;
      const [master] = findObjects(lib, s, masterKeyQuery('master'));
      if (!master) throw new Error('no master key on the test token');
      const mech = wrapMechanismId('aes-key-wrap-pad');
      const pair = await generateKeyPair(lib, s, 'ecdsa-secp256k1', { mode: 'wrapped' });
      const blob = await wrapKey(lib, s, mech, master, pair.privateKey);
      const key = await unwrapIntoSession(lib, s, mech, master, blob, 'ecdsa-secp256k1');
      try {
        const attrs = lib.C_GetAttributeValue(s, key, [
          { type: pkcs11.CKA_SENSITIVE },
          { type: pkcs11.CKA_EXTRACTABLE },
          { type: pkcs11.CKA_SIGN },
          { type: pkcs11.CKA_DECRYPT },
          { type: pkcs11.CKA_UNWRAP },
          { type: pkcs11.CKA_DERIVE },
          { type: pkcs11.CKA_TOKEN },
        ]);
        expect(attrs.map(bool)).toEqual([true, false, true, false, false, false, false]);
        expect(() => lib.C_WrapKey(s, { mechanism: mech }, master, key, Buffer.alloc(4096))).toThrow(/CKR_KEY_UNEXTRACTABLE/);
        expect(() => lib.C_GetAttributeValue(s, key, [{ type: pkcs11.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      } finally {
        for (const h of [key, pair.privateKey, pair.publicKey]) destroyObject(lib, s, h);
      }
    });
  });

  test('a wrapped blob is an RFC 5649 wrap of PKCS#8, not the key in the clear', async () => {
    const key = await hsm.generate('ecdsa-secp256k1', 'posture.blob');
    // PKCS#8 for secp256k1 starts 30 81 84 02 01 00 or 30 74 02 01 01...; a wrap hides it.
    expect(key.wrappedKey).not.toBeNull();
    expect(key.wrappedKey!.length % 8).toBe(0);
    expect(key.wrappedKey!.subarray(0, 2).toString('hex')).not.toBe('3081');
    expect(key.wrapMechanism).toBe('aes-key-wrap-pad');
    expect(key.masterKeyLabel).toBe('master');
  });
});

describe('cleanup', () => {
  test('1,000 signs and failed unwraps leave no session object behind', async () => {
    const before = await hsm.countSessionObjects();
    const key = await hsm.generate('ecdsa-p256', 'leak.p256');
    const record = recordOf('leak.p256', 'ecdsa-p256', key);
    const digest = createHash('sha256').update('leak').digest();
    const signs = Array.from({ length: 1000 }, () => hsm.sign(record, { kind: 'ecdsa', digest }));
    expect((await Promise.all(signs)).every((s) => s.length === 64)).toBe(true);
    const tampered = { ...record, wrappedKey: Buffer.from(record.wrappedKey!).fill(7, 10, 12) };
    for (let i = 0; i < 20; i++) await expect(hsm.sign(tampered, { kind: 'ecdsa', digest })).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    expect(await hsm.countSessionObjects()).toBe(before);
  });
});

describe('probe and modes', () => {
  test('SoftHSM wraps EC and RSA keys but not Ed25519, which is resident when listed', async () => {
    const modes = await hsm.allModes();
    expect(modes['ecdsa-secp256k1'].mode).toBe('wrapped');
    expect(modes['rsa-4096'].mode).toBe('wrapped');
    expect(modes['eddsa-ed25519'].mode).toBe('resident');
  });

  test('a resident key is a non-extractable token object that discard removes', async () => {
    const key = await hsm.generate('eddsa-ed25519', 'resident.one');
    expect(key.wrappedKey).toBeNull();
    expect(key.residentId).toHaveLength(16);
    const find = () =>
      hsm.pool.use(async (s) => {
        const lib = hsm.library.lib;
        lib.C_FindObjectsInit(s, [{ type: pkcs11.CKA_ID, value: key.residentId! }, { type: pkcs11.CKA_TOKEN, value: true }]);
        const found = lib.C_FindObjects(s, 10);
        lib.C_FindObjectsFinal(s);
        return found.map((h) => lib.C_GetAttributeValue(s, h, [{ type: pkcs11.CKA_EXTRACTABLE }, { type: pkcs11.CKA_SENSITIVE }]).map(bool));
      });
    expect(await find()).toEqual([[false, true]]);
    const sig = await hsm.sign(recordOf('resident.one', 'eddsa-ed25519', key), { kind: 'eddsa', message: Buffer.from('m') });
    expect(sig).toHaveLength(64);
    await hsm.discard(key);
    expect(await find()).toEqual([]);
  });
});

describe('master keys of rows', () => {
  test('a row wrapped under a master key this token lacks is KEY_INTEGRITY, not an HSM outage', async () => {
    const key = await hsm.generate('ecdsa-p256', 'other-master');
    const row = { ...recordOf('other-master', 'ecdsa-p256', key), masterKeyLabel: 'retired-master' };
    row.seal = (await hsm.sealRows([row]))[0]!; // a genuine row, as the driver that wrote it sealed it
    await expect(hsm.sign(row, { kind: 'ecdsa', digest: Buffer.alloc(32, 1) })).rejects.toMatchObject({
      code: 'KEY_INTEGRITY',
      message: expect.stringMatching(/retired-master/),
    });
    expect((await hsm.health()).ok).toBe(true);
  });
});

describe('resident keys that cannot be found', () => {
  test('are looked for again after one re-initialisation, then KEY_INTEGRITY; no second refresh within a minute', async () => {
    const key = await hsm.generate('eddsa-ed25519', 'gone');
    await hsm.discard(key);
    const row = recordOf('gone', 'eddsa-ed25519', key);
    const generation = hsm.pool.generation;
    const req = { kind: 'eddsa', message: Buffer.from('m') } as const;
    await expect(hsm.sign(row, req)).rejects.toMatchObject({ code: 'KEY_INTEGRITY', message: expect.stringMatching(/missing from the token/) });
    expect(hsm.pool.generation).toBe(generation + 1);
    await expect(hsm.sign(row, req)).rejects.toMatchObject({ code: 'KEY_INTEGRITY' });
    expect(hsm.pool.generation).toBe(generation + 1);
  });
});
