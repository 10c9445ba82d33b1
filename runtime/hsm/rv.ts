// Sorts PKCS#11 return values into what the driver does about them (replace the session,
// log in again, re-initialise the library) and which protocol code they surface as.
import * as pkcs11 from 'pkcs11js';
import { DriverError, HsmError, type ErrorCode } from '../errors.js';

export type Recovery = 'none' | 'session' | 'login' | 'library';

const SESSION_BROKEN = new Set<number>([
  pkcs11.CKR_SESSION_HANDLE_INVALID,
  pkcs11.CKR_SESSION_CLOSED,
  // After some failures the sign operation stays active on the session (FINDINGS.md).
  pkcs11.CKR_OPERATION_ACTIVE,
  pkcs11.CKR_ARGUMENTS_BAD,
]);

const LIBRARY_BROKEN = new Set<number>([
  pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
  pkcs11.CKR_DEVICE_ERROR,
  pkcs11.CKR_DEVICE_REMOVED,
  pkcs11.CKR_TOKEN_NOT_PRESENT,
  pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
  pkcs11.CKR_SLOT_ID_INVALID,
]);

/**
 * The application was logged out (a C_Logout or the last session closing, anywhere in the
 * process, or a token that dropped it): log in again and look up object handles afresh, since
 * tokens such as SoftHSM hand out new handles for private objects after a new login.
 */
const LOGIN_LOST = new Set<number>([
  pkcs11.CKR_USER_NOT_LOGGED_IN,
  pkcs11.CKR_UNWRAPPING_KEY_HANDLE_INVALID,
  pkcs11.CKR_WRAPPING_KEY_HANDLE_INVALID,
  // The integrity key's handle after a lost login (C_SignInit/C_VerifyInit name no wrapping key):
  // SoftHSM answers CKR_OBJECT_HANDLE_INVALID, others CKR_KEY_HANDLE_INVALID. Recovering costs
  // one C_Login, which a token still logged in answers with CKR_USER_ALREADY_LOGGED_IN.
  pkcs11.CKR_KEY_HANDLE_INVALID,
  pkcs11.CKR_OBJECT_HANDLE_INVALID,
]);

/** Login problems that no retry can fix without the operator: the token is unusable to us. */
export const PIN_REJECTED = new Set<number>([
  pkcs11.CKR_PIN_INCORRECT,
  pkcs11.CKR_PIN_LOCKED,
  pkcs11.CKR_PIN_EXPIRED,
  pkcs11.CKR_PIN_INVALID,
  pkcs11.CKR_PIN_LEN_RANGE,
  pkcs11.CKR_USER_PIN_NOT_INITIALIZED,
]);

export function rvOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

let names: Map<number, string> | undefined;

export function rvName(rv: number): string {
  if (!names) {
    // The CommonJS module's own object: an ESM namespace of it may list only `default`.
    const all = (pkcs11 as unknown as { default?: object }).default ?? pkcs11;
    names = new Map(Object.entries(all).filter(([n, v]) => n.startsWith('CKR_') && typeof v === 'number').map(([n, v]) => [v as number, n]));
  }
  return names.get(rv) ?? `CKR_0x${rv.toString(16)}`;
}

export function recoveryFor(err: unknown): Recovery {
  if (err instanceof HsmError) return recoveryForRv(err.rv);
  const rv = rvOf(err);
  return rv === undefined ? 'none' : recoveryForRv(rv);
}

function recoveryForRv(rv: number): Recovery {
  if (SESSION_BROKEN.has(rv)) return 'session';
  if (LOGIN_LOST.has(rv)) return 'login';
  if (LIBRARY_BROKEN.has(rv)) return 'library';
  return 'none';
}

function codeForRv(rv: number): ErrorCode {
  if (LIBRARY_BROKEN.has(rv) || PIN_REJECTED.has(rv) || SESSION_BROKEN.has(rv)) return 'HSM_UNAVAILABLE';
  if (rv === pkcs11.CKR_USER_NOT_LOGGED_IN) return 'HSM_UNAVAILABLE';
  // SoftHSM answers this when its token storage is gone (seen on keygen); a token that is fine
  // passes the readiness probe the closed gate runs, and work resumes.
  if (rv === pkcs11.CKR_GENERAL_ERROR) return 'HSM_UNAVAILABLE';
  return 'INTERNAL';
}

/**
 * Wraps a pkcs11js error as an HsmError naming the call and the CKR_ value. The message is
 * built from those two alone: nothing the caller passed in (PIN, key bytes) can leak into it.
 */
export function asHsmError(err: unknown, method: string, code?: ErrorCode): DriverError {
  if (err instanceof DriverError) return err;
  const rv = rvOf(err);
  if (rv === undefined) {
    return new HsmError(code ?? 'INTERNAL', `${method} failed: ${nativeMessage(err)}`, -1, method, { cause: err });
  }
  return new HsmError(code ?? codeForRv(rv), `${method} failed: ${rvName(rv)}`, rv, method);
}

function nativeMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // Native errors are library text such as "dlopen failed"; keep the first line only.
  return (text.split('\n')[0] ?? '').slice(0, 200);
}

/** Keygen errors that mean "this token cannot make such a key", not a fault. */
export const UNSUPPORTED_RV = new Set<number>([
  pkcs11.CKR_MECHANISM_INVALID,
  pkcs11.CKR_KEY_SIZE_RANGE,
  pkcs11.CKR_DOMAIN_PARAMS_INVALID,
  0x140, // CKR_CURVE_NOT_SUPPORTED (PKCS#11 2.40), absent from pkcs11js
  pkcs11.CKR_ATTRIBUTE_VALUE_INVALID,
]);
