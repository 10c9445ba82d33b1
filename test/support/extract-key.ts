// What an attacker with the PIN and a stored blob could do, done here on purpose so the tests
// know the secret they look for: unwrap a driver's blob under the master key as an extractable,
// non-sensitive session object and read its private values (FINDINGS.md: SoftHSM allows it
// whenever the unwrap template says so). Runs in the test process, never in the driver.
import { createECDH, createPublicKey } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import * as pkcs11 from 'pkcs11js';

export interface TokenEnv {
  PKCS11_MODULE: string;
  TOKEN_LABEL: string;
  pin: string;
}

export interface StoredSecrets {
  algorithm: string;
  /** EC: CKA_VALUE (the scalar). RSA: d, p, q, dp, dq, qinv. */
  values: Record<string, Buffer>;
}

const EC_CURVES: Record<string, { curve: string; size: number }> = {
  'ecdsa-secp256k1': { curve: 'secp256k1', size: 32 },
  'ecdsa-p256': { curve: 'prime256v1', size: 32 },
  'ecdsa-p384': { curve: 'secp384r1', size: 48 },
};

const RSA_PARTS: Record<string, number> = {
  d: pkcs11.CKA_PRIVATE_EXPONENT,
  p: pkcs11.CKA_PRIME_1,
  q: pkcs11.CKA_PRIME_2,
  dp: pkcs11.CKA_EXPONENT_1,
  dq: pkcs11.CKA_EXPONENT_2,
  qinv: pkcs11.CKA_COEFFICIENT,
};

const WRAP: Record<string, number> = { 'aes-key-wrap-pad': pkcs11.CKM_AES_KEY_WRAP_PAD, 'aes-key-wrap': pkcs11.CKM_AES_KEY_WRAP };

/** Reads `keyId`'s row from a driver's SQLite file and returns its private values. */
export function extractStoredKey(sqlitePath: string, keyId: string, token: TokenEnv): StoredSecrets {
  const db = new DatabaseSync(sqlitePath, { readOnly: true });
  const row = db.prepare('SELECT algorithm, wrapped_key, wrap_mechanism, master_key_label FROM keys WHERE key_id = ?').get(keyId) as
    | { algorithm: string; wrapped_key: Uint8Array | null; wrap_mechanism: string; master_key_label: string }
    | undefined;
  db.close();
  if (!row?.wrapped_key) throw new Error(`${keyId}: no wrapped key in ${sqlitePath}`);
  const rsa = row.algorithm.startsWith('rsa-');
  if (!rsa && !EC_CURVES[row.algorithm]) throw new Error(`${row.algorithm}: not an EC or RSA key`);
  const lib = new pkcs11.PKCS11();
  lib.load(token.PKCS11_MODULE);
  lib.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK });
  try {
    const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === token.TOKEN_LABEL);
    if (slot === undefined) throw new Error(`token ${token.TOKEN_LABEL} not found`);
    const session = lib.C_OpenSession(slot, pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION);
    lib.C_Login(session, pkcs11.CKU_USER, token.pin);
    lib.C_FindObjectsInit(session, [{ type: pkcs11.CKA_CLASS, value: pkcs11.CKO_SECRET_KEY }, { type: pkcs11.CKA_LABEL, value: row.master_key_label }]);
    const [master] = lib.C_FindObjects(session, 2);
    lib.C_FindObjectsFinal(session);
    if (!master) throw new Error(`master key ${row.master_key_label} not found`);
    const key = lib.C_UnwrapKey(session, { mechanism: WRAP[row.wrap_mechanism]! }, master, Buffer.from(row.wrapped_key), [
      { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PRIVATE_KEY },
      { type: pkcs11.CKA_KEY_TYPE, value: rsa ? pkcs11.CKK_RSA : pkcs11.CKK_EC },
      { type: pkcs11.CKA_TOKEN, value: false },
      { type: pkcs11.CKA_SENSITIVE, value: false },
      { type: pkcs11.CKA_EXTRACTABLE, value: true },
    ]);
    try {
      const parts: Record<string, number> = rsa ? RSA_PARTS : { scalar: pkcs11.CKA_VALUE };
      const read = lib.C_GetAttributeValue(session, key, Object.values(parts).map((type) => ({ type })));
      const values = Object.fromEntries(Object.keys(parts).map((name, i) => [name, Buffer.from(read[i]!.value as Buffer)]));
      if (!rsa) values.scalar = Buffer.concat([Buffer.alloc(Math.max(0, EC_CURVES[row.algorithm]!.size - values.scalar!.length)), values.scalar!]);
      return { algorithm: row.algorithm, values };
    } finally {
      lib.C_DestroyObject(session, key);
    }
  } finally {
    lib.C_Finalize();
  }
}

/** True when the extracted values are the private half of the key the driver reported. */
export function matchesPublicKey(secrets: StoredSecrets, publicKeyDer: Buffer): boolean {
  const ec = EC_CURVES[secrets.algorithm];
  if (ec) {
    const ecdh = createECDH(ec.curve);
    ecdh.setPrivateKey(secrets.values.scalar!);
    const spki = createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' });
    const jwk = spki.export({ format: 'jwk' });
    const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
    return ecdh.getPublicKey().equals(point);
  }
  const n = BigInt(`0x${Buffer.from(createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' }).export({ format: 'jwk' }).n!, 'base64url').toString('hex')}`);
  const big = (b: Buffer) => BigInt(`0x${b.toString('hex')}`);
  return big(secrets.values.p!) * big(secrets.values.q!) === n;
}
