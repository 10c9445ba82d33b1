// sign: unwrap the stored key inside the HSM, sign, destroy it, and return the signature only
// after it verifies against the stored public key.
import { ALGORITHM_SPECS, HASHES, RSA_HASHES } from '../runtime/crypto/algorithms.js';
import { EcdsaRecoveryError, formatEcdsaSignature, type EcdsaSignatureOutput } from '../runtime/crypto/ecdsa.js';
import { hashMessage } from '../runtime/crypto/hash.js';
import { verifySignature, type VerifyRequest } from '../runtime/crypto/verify.js';
import type { JobContext, SignRequest } from '../runtime/context.js';
import { InputError, KeyIntegrityError, KeyNotFoundError } from '../runtime/errors.js';
import type { KeyRecord } from '../runtime/store/store.js';
import { absent, asObject, hexField, keyIdOf, oneOf, required } from './input.js';

export const MAX_DATA_BYTES = 65536;

export type SignOutput = EcdsaSignatureOutput | { signature: string };

export async function sign(raw: unknown, ctx: JobContext): Promise<SignOutput> {
  const obj = asObject(raw);
  const keyId = keyIdOf(obj);
  ctx.audit({ keyId });
  const data = hexField(obj, 'data', MAX_DATA_BYTES);
  ctx.audit({ signed: data });
  const encoding = required(oneOf(obj, 'encoding', ['digest', 'message'] as const), 'encoding', '(digest or message)');
  oneOf(obj, 'hash', HASHES);
  oneOf(obj, 'padding', ['pss', 'pkcs1'] as const);

  const record = await ctx.store.get(keyId);
  if (!record) throw new KeyNotFoundError(keyId);
  ctx.audit({ algorithm: record.algorithm });
  const { request, verify } = plan(record, obj, data, encoding);

  const signature = await ctx.hsm.sign(record, request);
  const spec = ALGORITHM_SPECS[record.algorithm];
  // For secp256k1 and P-256, formatEcdsaSignature verifies against the stored key while it
  // finds the recovery id (the same u1·G + u2·Q), so a separate verify would repeat it.
  if (!(spec.family === 'ecdsa' && spec.recoverable)) verifyOrThrow(keyId, { ...verify, signature } as VerifyRequest);

  if (request.kind !== 'ecdsa') return { signature: signature.toString('hex') };
  try {
    return formatEcdsaSignature(record.algorithm, signature, request.digest, record.publicKeyDer);
  } catch (err) {
    if (err instanceof EcdsaRecoveryError) throw new KeyIntegrityError(`signature by ${keyId}: ${err.message}`);
    throw err;
  }
}

function verifyOrThrow(keyId: string, request: VerifyRequest): void {
  let verified: boolean;
  try {
    verified = verifySignature(request);
  } catch (err) {
    throw new KeyIntegrityError(`stored public key of ${keyId} is unusable: ${(err as Error).message}`);
  }
  if (!verified) throw new KeyIntegrityError(`signature by ${keyId} did not verify against its stored public key`);
}

/** A verify request before the signature exists (distributed over the union's members). */
type VerifyPlan = VerifyRequest extends infer R ? (R extends unknown ? Omit<R, 'signature'> : never) : never;

/** Checks the input against the key's algorithm (PROTOCOL.md's sign table) and says what to sign. */
function plan(record: KeyRecord, obj: Record<string, unknown>, data: Buffer, encoding: 'digest' | 'message'): { request: SignRequest; verify: VerifyPlan } {
  const spec = ALGORITHM_SPECS[record.algorithm];
  const spki = record.publicKeyDer;
  const forKey = `for ${record.algorithm} keys`;
  if (spec.family !== 'rsa') absent(obj, 'padding', forKey);

  if (spec.family === 'ecdsa') {
    let digest: Buffer;
    if (encoding === 'digest') {
      absent(obj, 'hash', 'with encoding digest');
      if (data.length !== spec.size) throw new InputError(`data must be exactly ${spec.size} bytes with encoding digest ${forKey}, got ${data.length}`);
      digest = data;
    } else {
      const hash = required(oneOf(obj, 'hash', HASHES), 'hash', `with encoding message ${forKey}`);
      // CKM_ECDSA takes at most the order's length; cut a longer hash to its leftmost bytes
      // ourselves (as ECDSA's bits2int does) rather than rely on each HSM doing it.
      digest = hashMessage(hash, data).subarray(0, spec.size);
    }
    return { request: { kind: 'ecdsa', digest }, verify: { family: 'ecdsa', spki, digest } };
  }

  if (encoding !== 'message') throw new InputError(`encoding must be message ${forKey}`);
  if (spec.family === 'eddsa') {
    absent(obj, 'hash', forKey);
    return { request: { kind: 'eddsa', message: data }, verify: { family: 'eddsa', spki, message: data } };
  }
  const hash = required(oneOf(obj, 'hash', RSA_HASHES), 'hash', `${forKey} (sha256, sha384 or sha512)`);
  const padding = oneOf(obj, 'padding', ['pss', 'pkcs1'] as const) ?? 'pss';
  return {
    request: { kind: 'rsa', padding, hash, message: data },
    verify: { family: 'rsa', spki, message: data, hash, padding },
  };
}
