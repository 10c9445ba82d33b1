// Checks the master key's posture at start. A weak master key still works (the operator may be
// mid-ceremony), but every weakness is named in a loud warning.
import * as pkcs11 from 'pkcs11js';
import { asHsmError } from './rv.js';

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
