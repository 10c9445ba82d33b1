// Message hashes for `sign` with encoding `message` (PROTOCOL.md): SHA-2 from OpenSSL,
// keccak256 from @noble/hashes because OpenSSL 3.0 has no original-padding Keccak.

import { createHash } from 'node:crypto';
import { keccak_256 } from '@noble/hashes/sha3.js';
import type { HashName } from './algorithms.js';

/** Output length in bytes of each hash: the digest an ECDSA signer is given. */
export const HASH_BYTES: Readonly<Record<HashName, number>> = {
  sha256: 32,
  sha384: 48,
  sha512: 64,
  keccak256: 32,
};

/**
 * Hashes `data` with `hash`. keccak256 is the pre-standard Keccak (0x01 padding) that
 * Ethereum uses, not SHA3-256: the two differ on every input.
 */
export function hashMessage(hash: HashName, data: Buffer): Buffer {
  switch (hash) {
    case 'sha256':
    case 'sha384':
    case 'sha512':
      return createHash(hash).update(data).digest();
    case 'keccak256': {
      const out = keccak_256(data);
      return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    }
    default:
      // Unreachable for typed callers; guards a value that slipped past input validation.
      throw new Error(`unknown hash: ${String(hash satisfies never)}`);
  }
}
