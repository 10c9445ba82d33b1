// keygen: make a key pair in the HSM, keep it wrapped (or resident), commit it, and only then
// answer. Idempotent on keyId, and safe when two drivers race for the same keyId.
import { ALGORITHMS, isAlgorithm, type Algorithm } from '../runtime/crypto/algorithms.js';
import { publicKeyHex } from '../runtime/crypto/public-key.js';
import type { JobContext } from '../runtime/context.js';
import { InputError, KeyExistsError, UnsupportedAlgorithmError } from '../runtime/errors.js';
import type { KeyRecord } from '../runtime/store/store.js';
import { asObject, keyIdOf } from './input.js';

export interface KeygenInput {
  keyId: string;
  algorithm: Algorithm;
}

export interface KeygenOutput {
  keyId: string;
  algorithm: Algorithm;
  publicKey?: string;
  publicKeyDer: string;
}

/** The algorithm, after the keyId has been checked (and noted for the audit record). */
function algorithmOf(obj: Record<string, unknown>): Algorithm {
  const algorithm = obj.algorithm;
  if (!isAlgorithm(algorithm)) {
    if (typeof algorithm === 'string') {
      throw new UnsupportedAlgorithmError(`unsupported algorithm ${JSON.stringify(algorithm.slice(0, 40))}; one of ${ALGORITHMS.join(', ')}`);
    }
    throw new InputError('algorithm is required, as a string');
  }
  return algorithm;
}

export async function keygen(raw: unknown, ctx: JobContext): Promise<KeygenOutput> {
  const obj = asObject(raw);
  const keyId = keyIdOf(obj);
  ctx.audit({ keyId });
  const input: KeygenInput = { keyId, algorithm: algorithmOf(obj) };
  ctx.audit({ algorithm: input.algorithm });
  const existing = await ctx.store.get(input.keyId);
  if (existing) return outputFor(existing, input);

  const key = await ctx.hsm.generate(input.algorithm, input.keyId);
  let outcome;
  try {
    outcome = await ctx.store.insertIfAbsent({ keyId: input.keyId, algorithm: input.algorithm, ...key, createdAt: new Date() });
  } catch (err) {
    await discardQuietly(ctx, key);
    throw err;
  }
  if (!outcome.inserted) {
    ctx.log.info({ keyId: input.keyId }, 'keygen race lost to another driver; returning the stored key');
    await discardQuietly(ctx, key);
  }
  return outputFor(outcome.stored, input);
}

function outputFor(stored: KeyRecord, input: KeygenInput): KeygenOutput {
  if (stored.algorithm !== input.algorithm) throw new KeyExistsError(input.keyId, stored.algorithm);
  const publicKey = publicKeyHex(stored.algorithm, stored.publicKeyDer);
  return {
    keyId: stored.keyId,
    algorithm: stored.algorithm,
    ...(publicKey === undefined ? {} : { publicKey }),
    publicKeyDer: stored.publicKeyDer.toString('base64'),
  };
}

/** A key nobody will use must not linger in the HSM, but failing to remove it loses nothing. */
async function discardQuietly(ctx: JobContext, key: Parameters<JobContext['hsm']['discard']>[0]): Promise<void> {
  try {
    await ctx.hsm.discard(key);
  } catch (err) {
    ctx.log.error({ err: (err as Error).message }, 'could not remove an unused resident key');
  }
}
