// The PKCS#11 calls on one session that make up keygen and sign: generate, read the public
// key, wrap, unwrap into a session object, sign, destroy. Slow calls use the Async variants
// so they run on libuv's pool instead of blocking the event loop.
import * as pkcs11 from 'pkcs11js';
import { ALGORITHM_SPECS, type Algorithm, type RsaHash } from '../crypto/algorithms.js';
import { spkiFromEcPoint, spkiFromEd25519, spkiFromRsa } from '../crypto/public-key.js';
import { KeyIntegrityError } from '../errors.js';
import { CKM_EDDSA, RSA_HASH } from './mechanisms.js';
import { asHsmError, recoveryFor } from './rv.js';
import { keyPairSpec, unwrapTemplate, type KeepMode } from './templates.js';

type Lib = pkcs11.PKCS11;
type Handle = pkcs11.Handle;

/** What the token is asked to sign, by mechanism. */
export type SignRequest =
  | { kind: 'ecdsa'; digest: Buffer }
  | { kind: 'eddsa'; message: Buffer }
  | { kind: 'rsa'; padding: 'pss' | 'pkcs1'; hash: RsaHash; message: Buffer };

export interface KeyPairHandles {
  privateKey: Handle;
  publicKey: Handle;
}

export async function generateKeyPair(lib: Lib, session: Handle, algorithm: Algorithm, keep: KeepMode): Promise<KeyPairHandles> {
  const spec = keyPairSpec(algorithm, keep);
  try {
    return await lib.C_GenerateKeyPairAsync(session, spec.mechanism, spec.publicTemplate, spec.privateTemplate);
  } catch (err) {
    throw asHsmError(err, 'C_GenerateKeyPair');
  }
}

/** Reads the public half and returns it as SubjectPublicKeyInfo DER. */
export function readPublicKey(lib: Lib, session: Handle, publicKey: Handle, algorithm: Algorithm): Buffer {
  try {
    if (ALGORITHM_SPECS[algorithm].family === 'rsa') {
      const [modulus, exponent] = lib.C_GetAttributeValue(session, publicKey, [
        { type: pkcs11.CKA_MODULUS },
        { type: pkcs11.CKA_PUBLIC_EXPONENT },
      ]);
      return spkiFromRsa(modulus?.value as Buffer, exponent?.value as Buffer);
    }
    const [point] = lib.C_GetAttributeValue(session, publicKey, [{ type: pkcs11.CKA_EC_POINT }]);
    const value = point?.value as Buffer;
    return ALGORITHM_SPECS[algorithm].family === 'eddsa' ? spkiFromEd25519(value) : spkiFromEcPoint(algorithm, value);
  } catch (err) {
    throw asHsmError(err, 'C_GetAttributeValue');
  }
}

export async function wrapKey(lib: Lib, session: Handle, mechanism: number, masterKey: Handle, key: Handle): Promise<Buffer> {
  try {
    // Large enough for RSA-4096's PKCS#8 (about 2.4 KB) plus padding.
    return await lib.C_WrapKeyAsync(session, { mechanism }, masterKey, key, Buffer.alloc(8192));
  } catch (err) {
    throw asHsmError(err, 'C_WrapKey');
  }
}

/**
 * Unwraps a stored blob into a sensitive, non-extractable, sign-only session object. A blob the
 * master key cannot open (tampered, truncated, another key's) is KEY_INTEGRITY; session and
 * device failures keep their own codes so the pool can recover.
 */
export async function unwrapIntoSession(
  lib: Lib,
  session: Handle,
  mechanism: number,
  masterKey: Handle,
  blob: Buffer,
  algorithm: Algorithm,
  template: pkcs11.Template = unwrapTemplate(algorithm),
): Promise<Handle> {
  try {
    return await lib.C_UnwrapKeyAsync(session, { mechanism }, masterKey, blob, template);
  } catch (err) {
    if (recoveryFor(err) !== 'none') throw asHsmError(err, 'C_UnwrapKey');
    throw new KeyIntegrityError(`stored key cannot be unwrapped (${asHsmError(err, 'C_UnwrapKey').message})`);
  }
}

export async function sign(lib: Lib, session: Handle, key: Handle, req: SignRequest): Promise<Buffer> {
  const { mechanism, data } = signMechanism(req);
  try {
    lib.C_SignInit(session, mechanism, key);
  } catch (err) {
    throw asHsmError(err, 'C_SignInit');
  }
  try {
    // An empty Buffer has no memory behind it: pkcs11js would pass a NULL data pointer, which
    // SoftHSM refuses (CKR_ARGUMENTS_BAD). An empty view of a real allocation signs "" as meant.
    return await lib.C_SignAsync(session, data.length === 0 ? Buffer.alloc(1).subarray(0, 0) : data, Buffer.alloc(1024));
  } catch (err) {
    throw asHsmError(err, 'C_Sign');
  }
}

function signMechanism(req: SignRequest): { mechanism: pkcs11.Mechanism; data: Buffer } {
  switch (req.kind) {
    case 'ecdsa':
      return { mechanism: { mechanism: pkcs11.CKM_ECDSA }, data: req.digest };
    case 'eddsa':
      // No parameters: pure Ed25519 over the message.
      return { mechanism: { mechanism: CKM_EDDSA }, data: req.message };
    case 'rsa': {
      const h = RSA_HASH[req.hash];
      if (req.padding === 'pkcs1') return { mechanism: { mechanism: h.pkcs1 }, data: req.message };
      const parameter: pkcs11.RsaPSS = { type: pkcs11.CK_PARAMS_RSA_PSS, hashAlg: h.hashAlg, mgf: h.mgf, saltLen: h.length };
      return { mechanism: { mechanism: h.pss, parameter }, data: req.message };
    }
  }
}

/** Destroys an object we created; failures are reported to the caller's logger, never thrown. */
export function destroyObject(lib: Lib, session: Handle, object: Handle): Error | undefined {
  try {
    lib.C_DestroyObject(session, object);
    return undefined;
  } catch (err) {
    return asHsmError(err, 'C_DestroyObject');
  }
}

export function findObjects(lib: Lib, session: Handle, template: pkcs11.Template, max = 16): Handle[] {
  try {
    lib.C_FindObjectsInit(session, template);
    try {
      return lib.C_FindObjects(session, max);
    } finally {
      lib.C_FindObjectsFinal(session);
    }
  } catch (err) {
    throw asHsmError(err, 'C_FindObjects');
  }
}
