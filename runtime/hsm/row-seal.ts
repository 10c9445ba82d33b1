// Row seals: each key row carries an HMAC-SHA256, made in the HSM under the integrity key, over
// what makes it that key — keyId, algorithm, public key, blob or resident id, wrap mechanism and
// master key label. A signature already has to verify against the stored public key, which
// catches a blob moved between rows; the seal also catches a whole row (blob and public key)
// copied to another keyId, which would otherwise sign for A with B's key.
import { createHash } from 'node:crypto';
import type * as pkcs11 from 'pkcs11js';
import type { Logger } from 'pino';
import { KeyIntegrityError } from '../errors.js';
import type { KeyRecord } from '../store/store.js';
import { IntegrityKeyMissingError, type IntegrityKey } from './integrity-key.js';

export type SealedFields = Pick<KeyRecord, 'keyId' | 'algorithm' | 'publicKeyDer' | 'wrappedKey' | 'residentId' | 'wrapMechanism' | 'masterKeyLabel'>;

// Audit records are sealed by the same key; the tag keeps one kind of seal from passing as the other.
const TAG = Buffer.from('hsm-driver key row v1 seal\n');

/** The bytes the HSM seals for a row. */
export function rowSealInput(r: SealedFields): Buffer {
  const hex = (b: Buffer | null) => b?.toString('hex') ?? null;
  const fields = [r.keyId, r.algorithm, hex(r.publicKeyDer), hex(r.wrappedKey), hex(r.residentId), r.wrapMechanism, r.masterKeyLabel];
  return Buffer.concat([TAG, createHash('sha256').update(JSON.stringify(fields)).digest()]);
}

const WARNED_LIMIT = 10_000;

export class RowSeals {
  /** Signs that used an unsealed row (written before row seals existed), for the metrics. */
  unsealedAccepted = 0;
  private readonly warned = new Set<string>();

  constructor(
    private readonly integrityKey: IntegrityKey,
    private readonly requireSealed: boolean,
    private readonly log: Logger,
  ) {}

  /** The seal of a new row, or null when the token has no integrity key (the driver warned at start). */
  seal(session: pkcs11.Handle, row: SealedFields): Buffer | null {
    try {
      return this.integrityKey.seal(session, rowSealInput(row));
    } catch (err) {
      if (err instanceof IntegrityKeyMissingError) return null;
      throw err;
    }
  }

  /** Before any unwrap or use of a row's key: KEY_INTEGRITY unless its seal verifies inside the HSM. */
  check(session: pkcs11.Handle, row: KeyRecord): void {
    if (row.seal === null) return this.acceptUnsealed(row.keyId);
    // A missing integrity key stays HSM_UNAVAILABLE: the token (or its storage) is the problem,
    // not the row, so the gate closes and the driver comes back when the token does.
    const ok = this.integrityKey.verify(session, rowSealInput(row), row.seal);
    if (!ok) throw new KeyIntegrityError(`the row of ${row.keyId} does not match its seal: it was changed, or copied from another keyId`);
  }

  private acceptUnsealed(keyId: string): void {
    if (this.requireSealed) throw new KeyIntegrityError(`the row of ${keyId} is not sealed and --require-sealed-rows is set; seal old rows with: hsm-driver keys seal`);
    this.unsealedAccepted++;
    if (this.warned.has(keyId) || this.warned.size >= WARNED_LIMIT) return;
    this.warned.add(keyId);
    this.log.warn({ keyId }, 'signing with an unsealed key row (written before row seals); run hsm-driver keys seal, then use --require-sealed-rows');
  }
}
