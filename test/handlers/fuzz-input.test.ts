// Property-based tests of bad input: any JSON as a keygen, sign or health input, and any job
// envelope through the dispatcher, ends in a valid output or in the protocol error code that
// PROTOCOL.md gives for it; never INTERNAL, never an exception that is not a DriverError. Runs
// the real handlers on the real SoftHSM2 token and a real SQLite file; outputs are checked with
// node's OpenSSL and noble, not the driver's own code path.
import { constants, createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { p256, p384 } from '@noble/curves/nist.js';
import { keccak_256 } from '@noble/hashes/sha3.js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { handlerFor } from '../../handlers/index.js';
import { runJob } from '../../runtime/driver/dispatch.js';
import { ApiError, parseJob, type Answer } from '../../runtime/driver/job-api.js';
import { DriverError, RETRYABLE, toWireError, type ErrorCode } from '../../runtime/errors.js';
import type { Hsm } from '../../runtime/hsm/hsm.js';
import { openSqliteStore } from '../../runtime/store/sqlite.js';
import type { WrappedKeyStore } from '../../runtime/store/store.js';
import {
  ALGORITHMS, FAST_ALGORITHMS, HASHES, JobInput, RSA_HASHES, anyValue, badAlgorithm, badKeyIdText, expectKeygen, expectSign, extras, freshKeyId, hexData,
  huge, isObject, notAString, objectText, type Expectation,
} from '../support/fuzz-input.js';
import { contextFor, openTestHsm, silentLog } from '../support/hsm.js';

const json = (v: unknown): string => JSON.stringify(v);
let hsm: Hsm;
let store: WrappedKeyStore;
/** What the store holds, as the model sees it: keyId → algorithm, and each key's public key. */
const keys = new Map<string, string>();
const publicKeys = new Map<string, KeyObject>();
const firstOutputs = new Map<string, unknown>();
const POOL = { 'pool.k1': 'ecdsa-secp256k1', 'pool.p256': 'ecdsa-p256', 'pool.p384': 'ecdsa-p384', 'pool.ed': 'eddsa-ed25519', 'pool.rsa': 'rsa-2048' } as const;
const poolId = fc.constantFrom(...Object.keys(POOL));

beforeAll(async () => {
  hsm = await openTestHsm({ 'resident-algorithms': 'eddsa-ed25519' });
  store = await openSqliteStore(join(mkdtempSync(join(tmpdir(), 'fuzz-input-')), 'keys.db'));
  for (const [keyId, algorithm] of Object.entries(POOL)) {
    checkKeygenOutput((await run('keygen', new JobInput(json({ keyId, algorithm })), { ok: true, codes: [] })) as Record<string, string>, keyId, algorithm);
  }
});
afterAll(async () => {
  await store?.close();
  await hsm?.close();
});

/** Runs one handler on one input and holds the outcome to the expectation; returns the output. */
async function run(kind: 'keygen' | 'sign' | 'health', input: JobInput, expected: Expectation): Promise<unknown> {
  let output: unknown;
  try {
    output = await handlerFor(kind)(input.parse(), contextFor(hsm, store));
  } catch (err) {
    if (!(err instanceof DriverError)) throw new Error(`${kind} threw a ${(err as Error)?.name ?? typeof err}, not a DriverError: ${String((err as Error)?.message ?? err).slice(0, 200)}`);
    const wire = toWireError(err);
    const why = `${kind} failed with ${wire.code} (${wire.message.slice(0, 200)})`;
    expect(wire.code, why).not.toBe('INTERNAL');
    expect(expected.codes, why).toContain(wire.code);
    expect(wire.retryable).toBe(false);
    return undefined;
  }
  expect(expected.ok, `${kind} succeeded where it must fail with ${expected.codes.join(' or ')}`).toBe(true);
  return output;
}

describe('keygen', () => {
  /** Fresh keyIds get only fast algorithms (or bad ones); existing or invalid keyIds get any. */
  const keygenInput = fc
    .oneof(
      { weight: 2, arbitrary: fc.tuple(fc.record({ keyId: freshKeyId.map(json), algorithm: fc.oneof(fc.constantFrom(...FAST_ALGORITHMS).map(json), badAlgorithm) }), extras) },
      {
        weight: 3,
        arbitrary: fc.tuple(
          fc.record({ keyId: fc.oneof(poolId.map(json), badKeyIdText), algorithm: fc.oneof(fc.constantFrom(...ALGORITHMS).map(json), badAlgorithm) }, { requiredKeys: [] }),
          extras,
        ),
      },
    )
    .map(([fields, more]) => objectText(fields, more));

  test('any input: a key as the protocol describes it, or INVALID_INPUT / UNSUPPORTED_ALGORITHM / KEY_EXISTS', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 5, arbitrary: keygenInput }, anyValue).map((t) => new JobInput(t)), async (input) => {
        const parsed = input.parse();
        const output = await run('keygen', input, expectKeygen(parsed, keys));
        if (output === undefined) return;
        const { keyId, algorithm } = parsed as { keyId: string; algorithm: string };
        checkKeygenOutput(output as Record<string, string>, keyId, algorithm);
      }),
      { numRuns: 100 },
    );
  });
});

/** The protocol's keygen output; a repeat for the same keyId returns exactly the first answer. */
function checkKeygenOutput(out: Record<string, string>, keyId: string, algorithm: string): void {
  expect(out.keyId).toBe(keyId);
  expect(out.algorithm).toBe(algorithm);
  const der = Buffer.from(out.publicKeyDer!, 'base64');
  expect(der.toString('base64')).toBe(out.publicKeyDer);
  const key = createPublicKey({ key: der, format: 'der', type: 'spki' });
  const jwk = key.export({ format: 'jwk' });
  const b64 = (s?: string) => Buffer.from(s!, 'base64url').toString('hex');
  if (algorithm.startsWith('ecdsa-')) {
    expect(key.asymmetricKeyDetails?.namedCurve).toBe({ 'ecdsa-secp256k1': 'secp256k1', 'ecdsa-p256': 'prime256v1', 'ecdsa-p384': 'secp384r1' }[algorithm]);
    expect(out.publicKey).toBe(`04${b64(jwk.x)}${b64(jwk.y)}`);
  } else if (algorithm === 'eddsa-ed25519') {
    expect(key.asymmetricKeyType).toBe('ed25519');
    expect(out.publicKey).toBe(b64(jwk.x));
  } else {
    expect(key.asymmetricKeyDetails).toMatchObject({ modulusLength: Number(algorithm.slice(4)), publicExponent: 65537n });
    expect(out).not.toHaveProperty('publicKey');
  }
  if (firstOutputs.has(keyId)) expect(out).toEqual(firstOutputs.get(keyId));
  firstOutputs.set(keyId, out);
  keys.set(keyId, algorithm);
  publicKeys.set(keyId, key);
}

describe('sign', () => {
  /** A field present `present` times in `present + absent`. */
  const maybe = (arb: fc.Arbitrary<string>, present: number, absent: number) => fc.oneof({ weight: present, arbitrary: arb }, { weight: absent, arbitrary: fc.constant(undefined) });
  const enc = fc.oneof({ weight: 8, arbitrary: fc.constantFrom('digest', 'message').map(json) }, fc.constantFrom('Digest', 'MESSAGE', 'raw', 'hex', '', 'digest ').map(json), notAString);
  const hash = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...HASHES).map(json) }, fc.constantFrom('SHA256', 'sha-256', 'sha3-256', 'keccak-256', 'md5', 'sha1', '').map(json), notAString);
  const padding = fc.oneof({ weight: 6, arbitrary: fc.constantFrom('pss', 'pkcs1').map(json) }, fc.constantFrom('PSS', 'pkcs1v15', 'oaep', 'none', '').map(json), notAString);
  const keyId = fc.oneof({ weight: 8, arbitrary: poolId.map(json) }, { weight: 2, arbitrary: freshKeyId.map(json) }, badKeyIdText);
  const data = fc.oneof({ weight: 10, arbitrary: hexData.map(json) }, notAString, huge);
  /** Anything in every field. */
  const wild = fc.tuple(fc.record({ keyId: maybe(keyId, 19, 1), data: maybe(data, 19, 1), encoding: maybe(enc, 19, 1), hash: maybe(hash, 1, 1), padding: maybe(padding, 1, 3) }), extras);
  /** Well-formed for the key's algorithm, so that many runs really sign. */
  const wellFormed = poolId.chain((id) => {
    const algorithm: string = POOL[id as keyof typeof POOL];
    const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => json(Buffer.from(b).toString('hex')));
    const base = { keyId: fc.constant(json(id)), encoding: fc.constant(json('message')) };
    const size = algorithm === 'ecdsa-p384' ? 48 : 32;
    const fields = algorithm.startsWith('ecdsa-')
      ? fc.oneof(
          fc.record({ ...base, encoding: fc.constant(json('digest')), data: bytes(size, size) }),
          fc.record({ ...base, data: bytes(0, 300), hash: fc.constantFrom(...HASHES).map(json) }),
        )
      : algorithm === 'eddsa-ed25519'
        ? fc.record({ ...base, data: bytes(0, 300) })
        : fc.record({ ...base, data: bytes(0, 300), hash: fc.constantFrom(...RSA_HASHES).map(json), padding: maybe(fc.constantFrom('pss', 'pkcs1').map(json), 2, 1) });
    return fc.tuple(fields as fc.Arbitrary<Record<string, string | undefined>>, fc.constant({}));
  });
  const signInput = fc.oneof({ weight: 3, arbitrary: wild }, { weight: 2, arbitrary: wellFormed }).map(([f, more]) => objectText(f, more));

  test('any input: a signature that verifies with an independent verifier, or INVALID_INPUT / KEY_NOT_FOUND', async () => {
    let signed = 0;
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 8, arbitrary: signInput }, anyValue).map((t) => new JobInput(t)), async (input) => {
        const parsed = input.parse();
        const output = await run('sign', input, expectSign(parsed, keys));
        if (output === undefined) return;
        signed++;
        checkSignOutput(output as Record<string, unknown>, parsed as Record<string, string>);
      }),
      { numRuns: 300 },
    );
    expect(signed).toBeGreaterThan(50); // the property did sign, with every kind of key
  });

  // An empty Buffer has no memory behind it: pkcs11js handed C_Sign a NULL pData, SoftHSM
  // answered CKR_ARGUMENTS_BAD, and the driver reported HSM_UNAVAILABLE (found by the property above).
  test.each(['pool.ed', 'pool.rsa'])('an empty message is signed by %s (a valid input by PROTOCOL.md)', async (keyId) => {
    const input = { keyId, data: '', encoding: 'message', ...(keyId === 'pool.rsa' ? { hash: 'sha256' } : {}) };
    const output = await run('sign', new JobInput(json(input)), { ok: true, codes: [] });
    checkSignOutput(output as Record<string, unknown>, input);
  });

  test('hex in capitals signs the same bytes as in lowercase, or is refused as INVALID_INPUT', async () => {
    // Ed25519 and RSA PKCS#1 v1.5 are deterministic: the same bytes give the same signature.
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 64 }).filter((b) => /[a-f]/.test(Buffer.from(b).toString('hex'))), fc.constantFrom('pool.ed', 'pool.rsa'), async (b, keyId) => {
        const lower = Buffer.from(b).toString('hex');
        const fields = { keyId, encoding: 'message', ...(keyId === 'pool.rsa' ? { hash: 'sha256', padding: 'pkcs1' } : {}) };
        const reference = (await run('sign', new JobInput(json({ ...fields, data: lower })), { ok: true, codes: [] })) as { signature: string };
        const upper = await run('sign', new JobInput(json({ ...fields, data: lower.toUpperCase() })), { ok: true, codes: ['INVALID_INPUT'] });
        if (upper !== undefined) expect(upper).toEqual(reference);
      }),
      { numRuns: 15 },
    );
  });
});

const CURVES = { 'ecdsa-secp256k1': [secp256k1, 32], 'ecdsa-p256': [p256, 32], 'ecdsa-p384': [p384, 48] } as const;

function digestOf(hash: string, data: Buffer): Buffer {
  return hash === 'keccak256' ? Buffer.from(keccak_256(data)) : createHash(hash).update(data).digest();
}

function checkSignOutput(out: Record<string, unknown>, input: Record<string, string>): void {
  const algorithm = keys.get(input.keyId!)!;
  const data = Buffer.from(input.data!.toLowerCase(), 'hex');
  const key = publicKeys.get(input.keyId!)!;
  const signature = Buffer.from(out.signature as string, 'hex');
  expect(out.signature).toMatch(/^(?:[0-9a-f]{2})+$/);
  if (algorithm in CURVES) {
    const [curve, size] = CURVES[algorithm as keyof typeof CURVES];
    const digest = input.encoding === 'digest' ? data : digestOf(input.hash!, data).subarray(0, size);
    const point = Buffer.from((firstOutputs.get(input.keyId!) as { publicKey: string }).publicKey, 'hex');
    expect(signature).toHaveLength(2 * size);
    expect(out.signature).toBe(`${out.r as string}${out.s as string}`);
    expect(curve.verify(signature, digest, point, { prehash: false, lowS: true })).toBe(true);
    expect(Buffer.from(curve.Signature.fromBytes(Buffer.from(out.der as string, 'hex'), 'der').toBytes('compact'))).toEqual(signature);
    if (algorithm === 'ecdsa-p384') return void expect(out).not.toHaveProperty('recoveryId');
    expect([0, 1]).toContain(out.recoveryId);
    const recovered = curve.Signature.fromBytes(signature, 'compact').addRecoveryBit(out.recoveryId as number).recoverPublicKey(digest).toBytes(false);
    expect(Buffer.from(recovered)).toEqual(point);
    return;
  }
  expect(Object.keys(out)).toEqual(['signature']);
  if (algorithm === 'eddsa-ed25519') return void expect(verify(null, data, key, signature)).toBe(true);
  const pss = input.padding !== 'pkcs1';
  const options = { key, padding: pss ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING, ...(pss ? { saltLength: constants.RSA_PSS_SALTLEN_DIGEST } : {}) };
  expect(verify(input.hash!, data, options, signature)).toBe(true);
}

describe('health', () => {
  test('any object is a health report with every part ok; anything else is INVALID_INPUT', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.tuple(fc.constant({}), extras).map(([f, more]) => objectText(f, more)), anyValue).map((t) => new JobInput(t)), async (input) => {
        const parsed = input.parse();
        const output = await run('health', input, isObject(parsed) ? { ok: true, codes: [] } : { ok: false, codes: ['INVALID_INPUT'] });
        if (output === undefined) return;
        expect(output).toMatchObject({ ok: true, version: 'test', hsm: { ok: true }, masterKey: { ok: true }, database: { ok: true, kind: 'sqlite', keys: expect.any(Number) } });
      }),
      { numRuns: 25 },
    );
  });
});

describe('job envelopes through the dispatcher', () => {
  const PROTOCOL_CODES = Object.keys(RETRYABLE) as ErrorCode[];
  const kind = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('health', 'sign', 'keygen').map(json) },
    fc.constantFrom('Sign', 'KEYGEN', 'health ', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '').map(json),
    notAString,
  );
  const lease = fc.oneof(
    fc.date({ min: new Date(-8.64e15), max: new Date(8.64e15), noInvalidDate: true }).map((d) => json(d.toISOString())),
    fc.integer({ min: -60_000, max: 60_000 }).map((ms) => json(new Date(Date.now() + ms).toISOString())),
    fc.constantFrom('+275760-09-13T00:00:00.000Z', '9999-12-31T23:59:59Z', 'soon', '').map(json),
    notAString,
  );
  /** Inputs that never make a key: the handler properties above cover keygen's successes. */
  const input = fc.oneof(
    fc.constant('{}'),
    fc.record({ keyId: fc.oneof(poolId.map(json), badKeyIdText), algorithm: badAlgorithm }).map((f) => objectText(f)),
    fc.record({ keyId: poolId.map(json), data: hexData.map(json), encoding: fc.constantFrom('digest', 'message').map(json), hash: fc.constantFrom(...HASHES).map(json) }).map((f) => objectText(f)),
    anyValue,
  );
  const envelope = fc
    .tuple(
      fc.record({ id: fc.oneof({ weight: 9, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:~-]{1,64}$/).map(json) }, anyValue), kind, attempt: anyValue, leaseExpiresAt: lease, input }, { requiredKeys: ['id', 'kind', 'input'] }),
      extras,
    )
    .map(([f, more]) => new JobInput(objectText(f, more)));

  test('any envelope: bad-job, or exactly one answer, an output or a protocol error that is not INTERNAL', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof({ weight: 9, arbitrary: envelope }, anyValue.map((t) => new JobInput(t))), async (body) => {
        let job;
        try {
          job = parseJob(body.parse());
        } catch (err) {
          expect(err).toBeInstanceOf(ApiError);
          return void expect((err as ApiError).code).toBe('bad-job');
        }
        const answers: Answer[] = [];
        const deps = {
          api: { answer: async (_job: unknown, answer: Answer) => (answers.push(answer), 'accepted' as const) },
          hsm, store, readiness: { report: () => undefined }, driver: { version: 'test', startedAt: 0 }, log: silentLog, redact: [], state: () => 'running',
        };
        await runJob(job, deps);
        expect(answers).toHaveLength(1);
        const answer = answers[0]!;
        if ('output' in answer) return void expect(['health', 'sign', 'keygen']).toContain(job.kind);
        expect(PROTOCOL_CODES).toContain(answer.error.code);
        expect(answer.error.code).not.toBe('INTERNAL');
        expect(answer.error.retryable).toBe(RETRYABLE[answer.error.code]);
        if (!['health', 'sign', 'keygen'].includes(job.kind as string)) expect(answer.error.code).toBe('UNSUPPORTED_KIND');
      }),
      { numRuns: 100 },
    );
  });
});
