// The protocol's key algorithms and what each one means: family, curve, sizes.

export const ALGORITHMS = [
  'ecdsa-secp256k1',
  'ecdsa-p256',
  'ecdsa-p384',
  'eddsa-ed25519',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
] as const;

export type Algorithm = (typeof ALGORITHMS)[number];
export type EcCurve = 'secp256k1' | 'P-256' | 'P-384';

export type AlgorithmSpec =
  | {
      family: 'ecdsa';
      curve: EcCurve;
      /** DER of the curve OID, the value of CKA_EC_PARAMS. */
      ecParams: Buffer;
      /** Field size in bytes: r and s each, and the digest length for encoding 'digest'. */
      size: 32 | 48;
      /** Whether the protocol asks for a recoveryId (secp256k1 and P-256 only). */
      recoverable: boolean;
    }
  | { family: 'eddsa'; curve: 'Ed25519'; ecParams: Buffer }
  | { family: 'rsa'; modulusBits: 2048 | 3072 | 4096 };

const hex = (s: string) => Buffer.from(s, 'hex');

export const ALGORITHM_SPECS: Readonly<Record<Algorithm, AlgorithmSpec>> = {
  'ecdsa-secp256k1': { family: 'ecdsa', curve: 'secp256k1', ecParams: hex('06052b8104000a'), size: 32, recoverable: true },
  'ecdsa-p256': { family: 'ecdsa', curve: 'P-256', ecParams: hex('06082a8648ce3d030107'), size: 32, recoverable: true },
  'ecdsa-p384': { family: 'ecdsa', curve: 'P-384', ecParams: hex('06052b81040022'), size: 48, recoverable: false },
  // id-Ed25519 (1.3.101.112); SoftHSM and PKCS#11 3.0 tokens accept the OID form.
  'eddsa-ed25519': { family: 'eddsa', curve: 'Ed25519', ecParams: hex('06032b6570') },
  'rsa-2048': { family: 'rsa', modulusBits: 2048 },
  'rsa-3072': { family: 'rsa', modulusBits: 3072 },
  'rsa-4096': { family: 'rsa', modulusBits: 4096 },
};

export function isAlgorithm(value: unknown): value is Algorithm {
  return typeof value === 'string' && (ALGORITHMS as readonly string[]).includes(value);
}

/** Message hashes the protocol allows; keccak256 is ECDSA-only. */
export const HASHES = ['sha256', 'sha384', 'sha512', 'keccak256'] as const;
export type HashName = (typeof HASHES)[number];

/** The hashes RSA signing takes (keccak256 is for ECDSA only). */
export const RSA_HASHES = ['sha256', 'sha384', 'sha512'] as const;
export type RsaHash = (typeof RSA_HASHES)[number];

export function isHashName(value: unknown): value is HashName {
  return typeof value === 'string' && (HASHES as readonly string[]).includes(value);
}
