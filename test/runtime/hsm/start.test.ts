// Start-up checks against a real token: PIN, master key, and algorithms the token cannot wrap.
// Each test opens and closes its own Hsm; none runs beside another (login is process-wide).
import { describe, expect, test } from 'vitest';
import { Hsm } from '../../../runtime/hsm/hsm.js';
import { openTestHsm, silentLog, testHsmConfig } from '../../support/hsm.js';

describe.sequential('start', () => {
  test('a wrong PIN is HSM_UNAVAILABLE and the message does not hold it', async () => {
    const config = { ...testHsmConfig(), pin: 'wrong-pin-4242' };
    const err = await Hsm.open(config, silentLog).then(
      async (h) => void (await h.close()),
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'HSM_UNAVAILABLE' });
    expect((err as Error).message).toMatch(/CKR_PIN_INCORRECT/);
    expect((err as Error).message).not.toContain('wrong-pin-4242');
  });

  test('a missing master key label is refused at start', async () => {
    await expect(openTestHsm({ 'master-key-label': 'no-such-master' })).rejects.toThrow(/master key "no-such-master" not found/);
  });

  test('a wrap mechanism the token does not offer is refused at start, also by the long-running driver', async () => {
    const message = /does not offer wrap mechanism aes-kwp; it offers: aes-key-wrap-pad, aes-key-wrap/;
    await expect(openTestHsm({ 'wrap-mechanism': 'aes-kwp' })).rejects.toThrow(message);
    await expect(Hsm.start(testHsmConfig({ 'wrap-mechanism': '0x210b' }), silentLog)).rejects.toThrow(message);
  });

  test('RFC 3394 wrapping (aes-key-wrap) works and is recorded in the key', async () => {
    const hsm = await openTestHsm({ 'wrap-mechanism': 'aes-key-wrap' });
    try {
      const key = await hsm.generate('ecdsa-secp256k1', 'kw.1');
      expect(key.wrapMechanism).toBe('aes-key-wrap');
      const sig = await hsm.sign({ keyId: 'kw.1', algorithm: 'ecdsa-secp256k1', ...key, createdAt: new Date() }, { kind: 'ecdsa', digest: Buffer.alloc(32, 7) });
      expect(sig).toHaveLength(64);
    } finally {
      await hsm.close();
    }
  });

  test('an unknown token label is refused with the tokens that exist', async () => {
    await expect(openTestHsm({ 'token-label': 'no-such-token' })).rejects.toThrow(/no token matches label "no-such-token"; tokens present: "hsm-driver-test"/);
  });

  test('without --resident-algorithms, Ed25519 is unsupported on SoftHSM and says which option fixes it', async () => {
    const hsm = await openTestHsm();
    try {
      const ed = await hsm.modeOf('eddsa-ed25519');
      expect(ed).toMatchObject({ mode: 'unsupported' });
      expect(ed.mode === 'unsupported' && ed.reason).toMatch(/--resident-algorithms/);
      await expect(hsm.generate('eddsa-ed25519', 'x')).rejects.toMatchObject({ code: 'UNSUPPORTED_ALGORITHM' });
    } finally {
      await hsm.close();
    }
  });

  test('a token selected by serial and by slot is the same token', async () => {
    const byLabel = await openTestHsm();
    const { serial, slotId } = byLabel.pool.tokenInfo;
    await byLabel.close();
    for (const sel of [{ 'token-serial': serial }, { slot: slotId }]) {
      const hsm = await openTestHsm({ 'token-label': undefined, ...sel } as never);
      expect(hsm.pool.tokenInfo.serial).toBe(serial);
      await hsm.close();
    }
  });
});
