// The integrity key: an HSM-resident HMAC-SHA256 key (CKA_LABEL --integrity-key-label, default
// "integrity") that seals what must not change behind the driver's back (audit records, key
// rows). Someone who can write the database can recompute hashes, but not these seals: both
// making and checking one happen inside the HSM.
import * as pkcs11 from 'pkcs11js';
import { HsmError } from '../errors.js';
import { findObjects } from './keys.js';
import { asHsmError, rvOf } from './rv.js';
import type { SessionPool } from './session.js';

/** CKM_SHA256_HMAC. */
export const CKM_SHA256_HMAC = 0x251;
export const SEAL_BYTES = 32;

/** The ceremony command that makes the key, for the warning when it is missing. */
export function integrityKeyCeremony(label: string): string {
  return `pkcs11-tool --module MODULE --token-label TOKEN --login --keygen --key-type GENERIC:32 --label ${label} --id 03 --usage-sign --sensitive --private`;
}

/** The token has no (single) integrity key: nothing can be sealed until the ceremony makes one. */
export class IntegrityKeyMissingError extends HsmError {}

export class IntegrityKey {
  private handle: pkcs11.Handle | undefined;
  private epoch = '';

  constructor(
    private readonly pool: SessionPool,
    readonly label: string,
  ) {}

  /** The key's handle on `session`, looked up again after a re-initialisation or login. */
  find(session: pkcs11.Handle): pkcs11.Handle {
    if (this.epoch !== this.pool.handleEpoch) {
      this.handle = undefined;
      this.epoch = this.pool.handleEpoch;
    }
    if (this.handle) return this.handle;
    const found = findObjects(this.pool.lib, session, [
      { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_SECRET_KEY },
      { type: pkcs11.CKA_LABEL, value: this.label },
    ], 2);
    if (found.length !== 1) {
      const why = found.length === 0 ? `not found; make it at the key ceremony: ${integrityKeyCeremony(this.label)}` : 'is ambiguous (several keys have that label)';
      throw new IntegrityKeyMissingError('HSM_UNAVAILABLE', `integrity key "${this.label}" ${why}`, -1, 'C_FindObjects');
    }
    this.handle = found[0]!;
    return this.handle;
  }

  /** HMAC-SHA256 of `data` under the integrity key, computed in the HSM. */
  seal(session: pkcs11.Handle, data: Buffer): Buffer {
    const lib = this.pool.lib;
    try {
      lib.C_SignInit(session, { mechanism: CKM_SHA256_HMAC }, this.find(session));
      return lib.C_Sign(session, data, Buffer.alloc(SEAL_BYTES));
    } catch (err) {
      throw err instanceof HsmError ? err : asHsmError(err, 'C_Sign');
    }
  }

  /** True when `mac` is the seal of `data`; checked in the HSM (C_Verify), never by comparing here. */
  verify(session: pkcs11.Handle, data: Buffer, mac: Buffer): boolean {
    const lib = this.pool.lib;
    try {
      lib.C_VerifyInit(session, { mechanism: CKM_SHA256_HMAC }, this.find(session));
      return lib.C_Verify(session, data, mac);
    } catch (err) {
      const rv = rvOf(err);
      if (rv === pkcs11.CKR_SIGNATURE_INVALID || rv === pkcs11.CKR_SIGNATURE_LEN_RANGE) return false;
      throw err instanceof HsmError ? err : asHsmError(err, 'C_Verify');
    }
  }
}
