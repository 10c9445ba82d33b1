// Error classes that carry a protocol error code from where they arise, and the one
// function (toWireError) that turns anything thrown into the wire form of PROTOCOL.md.

export type ErrorCode =
  | 'INVALID_INPUT'
  | 'UNSUPPORTED_KIND'
  | 'UNSUPPORTED_ALGORITHM'
  | 'KEY_NOT_FOUND'
  | 'KEY_EXISTS'
  | 'KEY_INTEGRITY'
  | 'HSM_UNAVAILABLE'
  | 'DATABASE_UNAVAILABLE'
  | 'INTERNAL';

/** Which codes a client may retry: the table of PROTOCOL.md, in one place. */
export const RETRYABLE: Readonly<Record<ErrorCode, boolean>> = {
  INVALID_INPUT: false,
  UNSUPPORTED_KIND: false,
  UNSUPPORTED_ALGORITHM: false,
  KEY_NOT_FOUND: false,
  KEY_EXISTS: false,
  KEY_INTEGRITY: false,
  HSM_UNAVAILABLE: true,
  DATABASE_UNAVAILABLE: true,
  INTERNAL: true,
};

export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
}

/** Base class: every error we raise on purpose names its protocol code. */
export class DriverError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'DriverError';
  }
}

export class InputError extends DriverError {
  constructor(message: string) {
    super('INVALID_INPUT', message);
    this.name = 'InputError';
  }
}

export class UnsupportedKindError extends DriverError {
  constructor(kind: string) {
    super('UNSUPPORTED_KIND', `unsupported job kind: ${JSON.stringify(kind).slice(0, 80)}`);
    this.name = 'UnsupportedKindError';
  }
}

export class UnsupportedAlgorithmError extends DriverError {
  constructor(message: string) {
    super('UNSUPPORTED_ALGORITHM', message);
    this.name = 'UnsupportedAlgorithmError';
  }
}

export class KeyNotFoundError extends DriverError {
  constructor(keyId: string) {
    super('KEY_NOT_FOUND', `no stored key for keyId ${keyId}`);
    this.name = 'KeyNotFoundError';
  }
}

export class KeyExistsError extends DriverError {
  constructor(keyId: string, storedAlgorithm: string) {
    super('KEY_EXISTS', `keyId ${keyId} already exists with algorithm ${storedAlgorithm}`);
    this.name = 'KeyExistsError';
  }
}

export class KeyIntegrityError extends DriverError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('KEY_INTEGRITY', message, options);
    this.name = 'KeyIntegrityError';
  }
}

/** A PKCS#11 failure: keeps the CKR_ name, numeric rv and the method that returned it. */
export class HsmError extends DriverError {
  readonly rv: number;
  readonly method: string;
  constructor(code: ErrorCode, message: string, rv: number, method: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.rv = rv;
    this.method = method;
    this.name = 'HsmError';
  }
}

export class DatabaseError extends DriverError {
  constructor(code: 'DATABASE_UNAVAILABLE' | 'INTERNAL', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'DatabaseError';
  }
}

/** Raised for bad configuration at start-up: main prints the one-line message and exits non-zero. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const MAX_MESSAGE = 500;

/**
 * Turns anything thrown into a wire error. Never throws. Unknown errors become INTERNAL with a
 * generic message, since their text may come from a library we do not control.
 */
export function toWireError(err: unknown, redact: readonly string[] = []): WireError {
  let code: ErrorCode = 'INTERNAL';
  let message = 'internal error';
  try {
    if (err instanceof DriverError) {
      code = err.code;
      message = err.message;
    }
    for (const secret of redact) {
      if (secret.length > 0) message = message.split(secret).join('[redacted]');
    }
    if (message.length > MAX_MESSAGE) message = message.slice(0, MAX_MESSAGE);
  } catch {
    code = 'INTERNAL';
    message = 'internal error';
  }
  return { code, message, retryable: RETRYABLE[code] };
}
