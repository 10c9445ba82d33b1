// The shapes the HSM layer takes and gives: its configuration, a generated key, its health.
import type { Algorithm } from '../crypto/algorithms.js';
import type { KeyCacheOptions } from './key-cache.js';
import type { TokenSelector } from './module.js';

export interface HsmConfig {
  module: string;
  selector: TokenSelector;
  pin: string;
  sessions: number;
  masterKeyLabel: string;
  /** The HMAC key that seals audit records and rows; a token without it still signs, with a warning. */
  integrityKeyLabel?: string | undefined;
  wrapMechanism: string;
  residentAlgorithms: readonly Algorithm[];
  /** Unwrapped keys kept per session for repeated signs (off when absent). */
  keyCache?: KeyCacheOptions | undefined;
  /** Refuse rows without a seal (KEY_INTEGRITY) instead of accepting them with a warning. */
  requireSealedRows?: boolean | undefined;
}

/** What keygen commits to the store: exactly one of wrappedKey / residentId is set. */
export interface GeneratedKey {
  publicKeyDer: Buffer;
  wrappedKey: Buffer | null;
  residentId: Buffer | null;
  wrapMechanism: string | null;
  masterKeyLabel: string;
  /** The row's seal (runtime/hsm/row-seal.ts), or null when the token has no integrity key. */
  seal: Buffer | null;
}

export interface HsmHealth {
  ok: boolean;
  library: string;
  tokenLabel: string;
  tokenSerial: string;
  latencyMs: number;
  error?: string;
}
