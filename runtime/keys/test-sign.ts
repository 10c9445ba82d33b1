// Signs a fresh random challenge with a stored row, through the same path a sign job takes (seal
// checked in the HSM, unwrap, sign, destroy), and verifies it against the row's public key. Used
// where a command must know that a key still works: keys rewrap (the new blob), keys verify.
import { randomBytes } from 'node:crypto';
import { ALGORITHM_SPECS } from '../crypto/algorithms.js';
import { verifySignature } from '../crypto/verify.js';
import type { SignRequest } from '../context.js';
import { KeyIntegrityError } from '../errors.js';
import type { Hsm } from '../hsm/hsm.js';
import type { KeyRecord } from '../store/store.js';

export async function signAndVerify(hsm: Pick<Hsm, 'sign'>, row: KeyRecord): Promise<void> {
  const spec = ALGORITHM_SPECS[row.algorithm];
  const spki = row.publicKeyDer;
  const challenge = randomBytes(spec.family === 'ecdsa' ? spec.size : 32);
  const request: SignRequest =
    spec.family === 'ecdsa' ? { kind: 'ecdsa', digest: challenge }
    : spec.family === 'eddsa' ? { kind: 'eddsa', message: challenge }
    : { kind: 'rsa', padding: 'pss', hash: 'sha256', message: challenge };
  const signature = await hsm.sign(row, request);
  const verified =
    request.kind === 'ecdsa' ? verifySignature({ family: 'ecdsa', spki, digest: challenge, signature })
    : request.kind === 'eddsa' ? verifySignature({ family: 'eddsa', spki, message: challenge, signature })
    : verifySignature({ family: 'rsa', spki, message: challenge, hash: 'sha256', padding: 'pss', signature });
  if (!verified) throw new KeyIntegrityError(`a test signature by ${row.keyId} did not verify against its stored public key`);
}
