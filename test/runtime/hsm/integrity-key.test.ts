// The integrity key on the real SoftHSM2 token (made by dev-hsm.sh at the ceremony): seals are
// HMAC-SHA256 computed and checked inside the HSM; a token without the key still opens, and
// says how to make it (health reports it: test/handlers/health.test.ts).
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Hsm } from '../../../runtime/hsm/hsm.js';
import { IntegrityKey } from '../../../runtime/hsm/integrity-key.js';
import { openTestHsm } from '../../support/hsm.js';

let hsm: Hsm;
beforeAll(async () => {
  hsm = await openTestHsm();
});
afterAll(async () => {
  await hsm?.close();
});

describe('the integrity key', () => {
  test('a seal is 32 bytes, the same for the same data, checked by the HSM; a changed byte or seal fails', async () => {
    const data = Buffer.from('record 1: keyId k1, sign, ok');
    const seal = await hsm.seal(data);
    expect(seal).toHaveLength(32);
    expect(await hsm.seal(data)).toEqual(seal);
    expect(await hsm.verifySeal(data, seal)).toBe(true);
    expect(await hsm.verifySeal(Buffer.from('record 1: keyId k2, sign, ok'), seal)).toBe(false);
    const flipped = Buffer.from(seal);
    flipped[0]! ^= 1;
    expect(await hsm.verifySeal(data, flipped)).toBe(false);
    expect(await hsm.verifySeal(data, seal.subarray(0, 16))).toBe(false);
  });

  test('a seal cannot be recomputed without the HSM: it is no plain hash, nor an HMAC under a guessable key', async () => {
    const data = Buffer.from('row');
    const seal = await hsm.seal(data);
    for (const key of ['', 'integrity', '0'.repeat(32)]) expect(createHmac('sha256', key).update(data).digest()).not.toEqual(seal);
  });

  test('a token without the key: sealing fails with the ceremony command', async () => {
    // The same token and login, asking for a label it does not hold (a second Hsm would C_Finalize ours).
    const absent = new IntegrityKey(hsm.pool, 'no-such-integrity-key');
    await expect(hsm.pool.use(async (s) => absent.seal(s, Buffer.from('x')))).rejects.toThrow(
      /integrity key "no-such-integrity-key" not found; make it at the key ceremony: pkcs11-tool .* --keygen --key-type GENERIC:32 --label no-such-integrity-key/,
    );
    await expect(hsm.pool.use(async (s) => absent.verify(s, Buffer.from('x'), Buffer.alloc(32)))).rejects.toMatchObject({ code: 'HSM_UNAVAILABLE' });
  });
});
