// Imports a secret key of a known value into a dev token (dev-hsm.sh's MASTER_KEY_VALUE and
// INTEGRITY_KEY_VALUE): sensitive, never extractable, a private token object, as the ceremony
// makes it. For tests that need two tokens holding the same master key (a replacement HSM, a DR
// drill); a real HSM copies keys with its vendor's backup/cloning, never with a known value.
// pkcs11-tool cannot write a generic (HMAC) secret, hence C_CreateObject here.
//
// Everything comes from the environment (values never on a command line): MODULE, TOKEN_LABEL,
// PIN_FILE, KEY_LABEL, KEY_ID (hex), KEY_KIND (master | integrity), KEY_VALUE (hex), KEY_PUBLIC
// (1: CKA_PRIVATE=false, the weak ceremony).
import { readFileSync } from 'node:fs';
import pkcs11js from 'pkcs11js';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`dev-hsm-import-key: ${name} is not set`);
  return value;
};
const value = Buffer.from(env('KEY_VALUE'), 'hex');
if (value.length !== 32) throw new Error('dev-hsm-import-key: KEY_VALUE must be 32 bytes of hex');
const kind = env('KEY_KIND');
if (kind !== 'master' && kind !== 'integrity') throw new Error('dev-hsm-import-key: KEY_KIND must be master or integrity');

const lib = new pkcs11js.PKCS11();
lib.load(env('MODULE'));
lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
try {
  const label = env('TOKEN_LABEL');
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === label);
  if (slot === undefined) throw new Error(`dev-hsm-import-key: no token labelled ${label}`);
  const session = lib.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
  lib.C_Login(session, pkcs11js.CKU_USER, readFileSync(env('PIN_FILE'), 'utf8').trim());
  try {
    const master = kind === 'master';
    lib.C_CreateObject(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: master ? pkcs11js.CKK_AES : pkcs11js.CKK_GENERIC_SECRET },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: process.env.KEY_PUBLIC !== '1' },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_LABEL, value: env('KEY_LABEL') },
      { type: pkcs11js.CKA_ID, value: Buffer.from(env('KEY_ID'), 'hex') },
      { type: pkcs11js.CKA_VALUE, value },
      { type: pkcs11js.CKA_WRAP, value: master },
      { type: pkcs11js.CKA_UNWRAP, value: master },
      { type: pkcs11js.CKA_ENCRYPT, value: false },
      { type: pkcs11js.CKA_DECRYPT, value: false },
      { type: pkcs11js.CKA_SIGN, value: !master },
      { type: pkcs11js.CKA_VERIFY, value: !master },
    ]);
  } finally {
    lib.C_Logout(session);
    lib.C_CloseSession(session);
  }
} finally {
  lib.C_Finalize();
}
