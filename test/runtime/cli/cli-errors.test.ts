// The protocol's error codes as the built CLI answers them: bad inputs, unknown and clashing
// keys, an unsupported algorithm, a wrong PIN and a database that is down.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { useCli } from '../../support/cli.js';

const cli = useCli();
const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const freshId = (what: string) => `k_${what}.${randomBytes(4).toString('hex')}`;

describe('bad inputs are INVALID_INPUT, naming what is wrong', () => {
  // Read-only cases share one store with one key of each family.
  let store: string[] = [];
  beforeAll(() => {
    store = cli.sqlite();
    for (const [keyId, algorithm] of [['ec', 'ecdsa-p256'], ['rsa', 'rsa-2048'], ['ed', 'eddsa-ed25519']]) {
      const res = cli.job('keygen', { keyId, algorithm }, { store });
      if (!res.output) throw new Error(`keygen ${algorithm} failed: ${JSON.stringify(res.error)}`);
    }
  });

  const cases: Array<{ name: string; kind: 'keygen' | 'sign'; input?: unknown; stdin?: string; says: RegExp }> = [
    { name: 'input that is not JSON', kind: 'sign', stdin: '{"keyId": "ec",', says: /JSON/ },
    { name: 'input that is a JSON array', kind: 'keygen', input: [{ keyId: 'a', algorithm: 'ecdsa-p256' }], says: /object/ },
    { name: 'keyId with a "/"', kind: 'keygen', input: { keyId: 'tenant/1', algorithm: 'ecdsa-p256' }, says: /keyId/ },
    { name: 'keyId of 129 characters', kind: 'keygen', input: { keyId: 'k'.repeat(129), algorithm: 'ecdsa-p256' }, says: /keyId.*128/ },
    { name: 'keygen without algorithm', kind: 'keygen', input: { keyId: 'no-alg' }, says: /algorithm/ },
    { name: 'data with 0x', kind: 'sign', input: { keyId: 'ec', data: `0x${hex(31)}`, encoding: 'digest' }, says: /data.*0x/ },
    { name: 'data of odd length', kind: 'sign', input: { keyId: 'ec', data: hex(32).slice(1), encoding: 'digest' }, says: /data/ },
    { name: 'data of 65537 bytes', kind: 'sign', input: { keyId: 'ed', data: hex(65537), encoding: 'message' }, says: /data.*65536/ },
    { name: 'a 31-byte digest for P-256', kind: 'sign', input: { keyId: 'ec', data: hex(31), encoding: 'digest' }, says: /32 bytes/ },
    { name: 'a 48-byte digest for P-256', kind: 'sign', input: { keyId: 'ec', data: hex(48), encoding: 'digest' }, says: /32 bytes/ },
    { name: 'hash with encoding digest', kind: 'sign', input: { keyId: 'ec', data: hex(32), encoding: 'digest', hash: 'sha256' }, says: /hash/ },
    { name: 'ECDSA message without hash', kind: 'sign', input: { keyId: 'ec', data: hex(10), encoding: 'message' }, says: /hash/ },
    { name: 'an unknown hash', kind: 'sign', input: { keyId: 'ec', data: hex(10), encoding: 'message', hash: 'md5' }, says: /hash/ },
    { name: 'keccak256 on RSA', kind: 'sign', input: { keyId: 'rsa', data: hex(10), encoding: 'message', hash: 'keccak256' }, says: /hash/ },
    { name: 'padding on an EC key', kind: 'sign', input: { keyId: 'ec', data: hex(10), encoding: 'message', hash: 'sha256', padding: 'pss' }, says: /padding/ },
    { name: 'encoding digest on Ed25519', kind: 'sign', input: { keyId: 'ed', data: hex(32), encoding: 'digest' }, says: /encoding/ },
    { name: 'hash on Ed25519', kind: 'sign', input: { keyId: 'ed', data: hex(10), encoding: 'message', hash: 'sha512' }, says: /hash/ },
    { name: 'sign without encoding', kind: 'sign', input: { keyId: 'ec', data: hex(32) }, says: /encoding/ },
  ];

  it.each(cases)('$name', ({ kind, input, stdin, says }) => {
    const res = cli.job(kind, input, { store, ...(stdin === undefined ? {} : { stdin }) });
    expect(res.error).toEqual({ code: 'INVALID_INPUT', message: expect.stringMatching(says), retryable: false });
  });

  it('accepts the limits themselves: a 128-character keyId, 65536 bytes of data', () => {
    const keyId = 'k'.repeat(128);
    expect(cli.job('keygen', { keyId, algorithm: 'eddsa-ed25519' }, { store }).output).toMatchObject({ keyId });
    const signed = cli.job('sign', { keyId, data: hex(65536), encoding: 'message' }, { store });
    expect(signed.output?.signature).toMatch(/^[0-9a-f]{128}$/);
  });
});

describe('keys', () => {
  it('an unknown algorithm is UNSUPPORTED_ALGORITHM', () => {
    const res = cli.job('keygen', { keyId: freshId('p521'), algorithm: 'ecdsa-p521' }, { store: cli.sqlite() });
    expect(res.error).toEqual({ code: 'UNSUPPORTED_ALGORITHM', message: expect.stringContaining('ecdsa-p521'), retryable: false });
  });

  it('Ed25519 without --resident-algorithms is UNSUPPORTED_ALGORITHM pointing at the flag; listed, it works', () => {
    const store = cli.sqlite();
    const keyId = freshId('ed');
    const refused = cli.job('keygen', { keyId, algorithm: 'eddsa-ed25519' }, { store, env: { RESIDENT_ALGORITHMS: undefined } });
    expect(refused.error).toEqual({ code: 'UNSUPPORTED_ALGORITHM', message: expect.stringContaining('--resident-algorithms'), retryable: false });
    expect(cli.job('keygen', { keyId, algorithm: 'eddsa-ed25519' }, { store }).output).toMatchObject({ keyId });
  });

  it('signing with a keyId never made is KEY_NOT_FOUND', () => {
    const keyId = freshId('never');
    const res = cli.job('sign', { keyId, data: hex(32), encoding: 'digest' }, { store: cli.sqlite() });
    expect(res.error).toEqual({ code: 'KEY_NOT_FOUND', message: expect.stringContaining(keyId), retryable: false });
  });

  it('keygen is idempotent for the same keyId and algorithm, and stores one key', () => {
    const store = cli.sqlite();
    const keyId = freshId('again');
    const first = cli.job('keygen', { keyId, algorithm: 'ecdsa-secp256k1' }, { store });
    const second = cli.job('keygen', { keyId, algorithm: 'ecdsa-secp256k1' }, { store });
    expect(first.output?.publicKey).toMatch(/^04[0-9a-f]{128}$/);
    expect(second.output).toEqual(first.output);
    expect(cli.job('health', {}, { store }).output?.database).toMatchObject({ ok: true, keys: 1 });
  });

  it('keygen for an existing keyId with another algorithm is KEY_EXISTS and leaves the key alone', () => {
    const store = cli.sqlite();
    const keyId = freshId('clash');
    const made = cli.job('keygen', { keyId, algorithm: 'ecdsa-p256' }, { store });
    const clash = cli.job('keygen', { keyId, algorithm: 'rsa-2048' }, { store });
    expect(clash.error).toEqual({ code: 'KEY_EXISTS', message: expect.stringContaining('ecdsa-p256'), retryable: false });
    expect(cli.job('keygen', { keyId, algorithm: 'ecdsa-p256' }, { store }).output).toEqual(made.output);
  });
});

describe('unavailable parts are retryable', () => {
  const wrongPin = { USER_PIN: 'wrong-pin-123456', USER_PIN_FILE: undefined };

  it('a wrong PIN is HSM_UNAVAILABLE, retryable, for keygen and for sign', () => {
    const store = cli.sqlite();
    const keyId = freshId('pin');
    expect(cli.job('keygen', { keyId, algorithm: 'ecdsa-p256' }, { store }).output).toBeDefined();
    for (const [kind, input] of [
      ['keygen', { keyId: freshId('pin'), algorithm: 'ecdsa-p256' }],
      ['sign', { keyId, data: hex(32), encoding: 'digest' }],
    ] as const) {
      const res = cli.job(kind, input, { store, env: wrongPin });
      expect(res.error).toMatchObject({ code: 'HSM_UNAVAILABLE', retryable: true });
      expect(res.error?.message).toMatch(/PIN|login/i);
      expect(res.stdout + res.stderr).not.toContain(wrongPin.USER_PIN);
    }
  });

  it('a PostgreSQL server that is down is DATABASE_UNAVAILABLE, retryable, without the password', () => {
    const res = cli.job('keygen', { keyId: freshId('db'), algorithm: 'ecdsa-p256' }, { store: ['--postgres-url', 'postgres://hsm:pw-secret-77@127.0.0.1:1/keys'] });
    expect(res.error).toMatchObject({ code: 'DATABASE_UNAVAILABLE', retryable: true });
    expect(res.stdout + res.stderr).not.toContain('pw-secret-77');
  });
});
