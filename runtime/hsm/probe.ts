// Finds out, once per algorithm, whether this token can keep such keys stateless (generate,
// wrap, unwrap, sign) or must keep them resident, by doing it with a throwaway key.
import { randomBytes } from 'node:crypto';
import * as pkcs11 from 'pkcs11js';
import { ALGORITHM_SPECS, type Algorithm } from '../crypto/algorithms.js';
import { destroyObject, generateKeyPair, sign, unwrapIntoSession, wrapKey, type SignRequest } from './keys.js';
import { recoveryFor } from './rv.js';

export type AlgorithmMode =
  | { mode: 'wrapped' }
  | { mode: 'resident' }
  | { mode: 'unsupported'; reason: string };

export function probeRequest(algorithm: Algorithm): SignRequest {
  const spec = ALGORITHM_SPECS[algorithm];
  if (spec.family === 'ecdsa') return { kind: 'ecdsa', digest: randomBytes(spec.size) };
  if (spec.family === 'eddsa') return { kind: 'eddsa', message: Buffer.from('hsm-driver probe') };
  return { kind: 'rsa', padding: 'pss', hash: 'sha256', message: Buffer.from('hsm-driver probe') };
}

export async function probeAlgorithm(
  lib: pkcs11.PKCS11,
  session: pkcs11.Handle,
  algorithm: Algorithm,
  resident: boolean,
  wrapMechanism: number,
  masterKey: pkcs11.Handle,
): Promise<AlgorithmMode> {
  const created: pkcs11.Handle[] = [];
  let step = 'generate';
  try {
    const keep = resident ? ({ mode: 'resident', id: randomBytes(8), label: 'probe', probeOnly: true } as const) : ({ mode: 'wrapped' } as const);
    const pair = await generateKeyPair(lib, session, algorithm, keep);
    created.push(pair.publicKey, pair.privateKey);
    let signer = pair.privateKey;
    if (!resident) {
      step = 'wrap';
      const blob = await wrapKey(lib, session, wrapMechanism, masterKey, pair.privateKey);
      step = 'unwrap';
      signer = await unwrapIntoSession(lib, session, wrapMechanism, masterKey, blob, algorithm);
      created.push(signer);
    }
    step = 'sign';
    await sign(lib, session, signer, probeRequest(algorithm));
    return resident ? { mode: 'resident' } : { mode: 'wrapped' };
  } catch (err) {
    // Session and device faults are not a verdict on the algorithm: let the pool handle them.
    if (recoveryFor(err) !== 'none') throw err;
    const detail = (err as Error).message;
    // RSA sizes share one probe (see Hsm.modeOf): name the family, not the probe's size.
    const what = ALGORITHM_SPECS[algorithm].family === 'rsa' ? 'RSA' : algorithm;
    if (!resident && (step === 'wrap' || step === 'unwrap')) {
      return {
        mode: 'unsupported',
        reason: `this token cannot ${step} ${what} keys (${detail}); list it in --resident-algorithms to keep such keys as non-extractable objects in the HSM`,
      };
    }
    return { mode: 'unsupported', reason: `this token cannot ${step} ${what} keys (${detail})` };
  } finally {
    for (const h of created.reverse()) destroyObject(lib, session, h);
  }
}
