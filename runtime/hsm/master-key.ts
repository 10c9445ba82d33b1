// The master keys: handles by label (cached until they may be stale), which one a stored row
// needs, and the posture check at start. A weak master key still works (the operator may be
// mid-ceremony), but every weakness is named in a loud warning.
import * as pkcs11 from 'pkcs11js';
import { HsmError, KeyIntegrityError } from '../errors.js';
import type { KeyRecord } from '../store/store.js';
import { findObjects } from './keys.js';
import { asHsmError } from './rv.js';
import type { SessionPool } from './session.js';
import { masterKeyQuery } from './templates.js';

export class MasterKeys {
  private handles = new Map<string, pkcs11.Handle>();
  private epoch = '';

  constructor(
    private readonly pool: SessionPool,
    private readonly configuredLabel: string,
  ) {}

  /** Handle by label, cached until the library is re-initialised or logs in again. */
  handle(session: pkcs11.Handle, label: string, opts: { fresh?: boolean } = {}): pkcs11.Handle {
    if (this.epoch !== this.pool.handleEpoch) {
      this.handles = new Map();
      this.epoch = this.pool.handleEpoch;
    }
    const cached = opts.fresh ? undefined : this.handles.get(label);
    if (cached) return cached;
    const found = findObjects(this.pool.lib, session, masterKeyQuery(label), 2);
    if (found.length === 0 && !this.pool.isLoggedIn(session)) {
      // A private master key is invisible when logged out; say so, so the pool logs in again.
      throw new HsmError('HSM_UNAVAILABLE', 'token is not logged in', pkcs11.CKR_USER_NOT_LOGGED_IN, 'C_FindObjects');
    }
    if (found.length !== 1) {
      const why = found.length === 0 ? 'not found' : 'is ambiguous (several keys have that label)';
      throw new HsmError('HSM_UNAVAILABLE', `master key "${label}" ${why} on token ${this.pool.tokenInfo.label}`, -1, 'C_FindObjects');
    }
    this.handles.set(label, found[0]!);
    return found[0]!;
  }

  /**
   * The master key a row was wrapped under. Our own master key missing is the token's problem
   * (HSM_UNAVAILABLE, the gate closes); another label missing is that row's (KEY_INTEGRITY), so
   * one odd row cannot take the driver out of service.
   */
  forRow(session: pkcs11.Handle, record: KeyRecord): pkcs11.Handle {
    try {
      return this.handle(session, record.masterKeyLabel);
    } catch (err) {
      if (record.masterKeyLabel === this.configuredLabel || !(err instanceof HsmError) || err.rv !== -1) throw err;
      throw new KeyIntegrityError(`${record.keyId} was wrapped under master key "${record.masterKeyLabel}", which this token does not hold`);
    }
  }
}

const EXPECTED: ReadonlyArray<{ type: number; name: string; want: boolean; why: string }> = [
  { type: pkcs11.CKA_TOKEN, name: 'CKA_TOKEN', want: true, why: 'a session master key vanishes with the session' },
  { type: pkcs11.CKA_PRIVATE, name: 'CKA_PRIVATE', want: true, why: 'it can be used without logging in (made without pkcs11-tool --private?)' },
  { type: pkcs11.CKA_SENSITIVE, name: 'CKA_SENSITIVE', want: true, why: 'its value can be read' },
  { type: pkcs11.CKA_EXTRACTABLE, name: 'CKA_EXTRACTABLE', want: false, why: 'it can be wrapped out of the HSM' },
  { type: pkcs11.CKA_WRAP, name: 'CKA_WRAP', want: true, why: 'keygen cannot wrap new keys' },
  { type: pkcs11.CKA_UNWRAP, name: 'CKA_UNWRAP', want: true, why: 'sign cannot unwrap stored keys' },
];

/** Returns one warning per attribute that differs from a good ceremony; empty when all is well. */
export function checkMasterKey(lib: pkcs11.PKCS11, session: pkcs11.Handle, key: pkcs11.Handle): string[] {
  const warnings: string[] = [];
  try {
    const [keyType] = lib.C_GetAttributeValue(session, key, [{ type: pkcs11.CKA_KEY_TYPE }]);
    const type = (keyType?.value as Buffer).readUInt32LE(0);
    if (type !== pkcs11.CKK_AES) warnings.push(`key type is 0x${type.toString(16)}, not AES`);
    const values = lib.C_GetAttributeValue(
      session,
      key,
      EXPECTED.map((e) => ({ type: e.type })),
    );
    EXPECTED.forEach((e, i) => {
      const v = values[i]?.value as Buffer | undefined;
      const actual = v !== undefined && v.length > 0 && v[0] !== 0;
      if (actual !== e.want) warnings.push(`${e.name} is ${actual}: ${e.why}`);
    });
  } catch (err) {
    warnings.push(`attributes could not be read: ${asHsmError(err, 'C_GetAttributeValue').message}`);
  }
  return warnings;
}
