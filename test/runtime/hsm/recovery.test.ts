// Recovery against a real SoftHSM2 token, with the faults made for real: sessions closed
// behind the pool's back, a logout, a finalised library, and the token directory taken away.
import { renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Hsm } from '../../../runtime/hsm/hsm.js';
import type { KeyRecord } from '../../../runtime/store/store.js';
import { openTestHsm } from '../../support/hsm.js';

let hsm: Hsm;
let record: KeyRecord;
const digest = createHash('sha256').update('recovery').digest();
const signOnce = () => hsm.sign(record, { kind: 'ecdsa', digest });

beforeAll(async () => {
  hsm = await openTestHsm({ sessions: '2' });
  record = { keyId: 'recovery', algorithm: 'ecdsa-p256', ...(await hsm.generate('ecdsa-p256', 'recovery')), createdAt: new Date() };
});
afterAll(async () => {
  await hsm?.close();
});

describe.sequential('recovery', () => {
  test('sessions closed behind the pool are replaced, and login is restored', async () => {
    await Promise.all([signOnce(), signOnce()]); // both pooled sessions exist
    hsm.library.lib.C_CloseAllSessions(hsm.pool.tokenInfo.slot);
    expect(await signOnce()).toHaveLength(64);
    expect(await Promise.all([signOnce(), signOnce()])).toHaveLength(2);
  });

  test('a logout behind the pool leads to a new login', async () => {
    await hsm.pool.use(async (s) => hsm.library.lib.C_Logout(s));
    expect(await signOnce()).toHaveLength(64);
  });

  test('a finalised library (CKR_CRYPTOKI_NOT_INITIALIZED) is initialised again', async () => {
    const generation = hsm.pool.generation;
    hsm.library.lib.C_Finalize();
    expect(await signOnce()).toHaveLength(64);
    expect(hsm.pool.generation).toBe(generation + 1);
  });

  test('a token that went away gives HSM_UNAVAILABLE, and work resumes when it is back', async () => {
    const tokens = join(dirname(process.env.SOFTHSM2_CONF!), 'tokens');
    hsm.library.lib.C_Finalize();
    renameSync(tokens, `${tokens}.away`);
    try {
      await expect(signOnce()).rejects.toMatchObject({ code: 'HSM_UNAVAILABLE' });
      expect((await hsm.health()).ok).toBe(false);
    } finally {
      renameSync(`${tokens}.away`, tokens);
    }
    // The pool retries at most once a second; keep asking as a poll loop would.
    let signature: Buffer | undefined;
    for (let i = 0; i < 30 && !signature; i++) {
      signature = await signOnce().catch(() => undefined);
      if (!signature) await new Promise((r) => setTimeout(r, 200));
    }
    expect(signature).toHaveLength(64);
    expect((await hsm.health()).ok).toBe(true);
  });
});
