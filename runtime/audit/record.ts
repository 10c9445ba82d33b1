// One audit record and its hash. Records form chains (each holds the previous record's hash)
// and each is sealed by the HSM (HMAC-SHA256 under the integrity key, see hsm/integrity-key.ts):
// someone who can write the database can recompute a chain of hashes, but not the seals.
import { createHash } from 'node:crypto';

/** What happened, as the dispatcher and the handler saw it; the chain fields come later. */
export interface AuditEntry {
  at: Date;
  jobId: string;
  attempt: number;
  /** keygen, sign, or a key-lifecycle command. */
  kind: string;
  keyId: string | null;
  algorithm: string | null;
  /** SHA-256 of the bytes a sign job asked to sign (the input's data, decoded). */
  dataSha256: Buffer | null;
  outcome: 'ok' | 'error';
  /** The protocol error code when outcome is error. */
  code: string | null;
  /** Who did it: the driver's client certificate subject and SHA-256 fingerprint. */
  driverSubject: string;
  driverFingerprint: string;
}

export interface AuditRecord extends AuditEntry {
  /** One chain per driver process; a chain is verified on its own. */
  chain: string;
  /** 1, 2, 3 … within the chain, with no gaps. */
  seq: number;
  /** The previous record's hash; GENESIS for seq 1. */
  prevHash: Buffer;
  hash: Buffer;
  /** HMAC-SHA256 of sealInput(hash), made in the HSM; null only when the token had no integrity key. */
  seal: Buffer | null;
}

export const GENESIS = Buffer.alloc(32);
const FORMAT = 'hsm-driver audit v1';
// Seals of audit records and of key rows come from one key; a tag per kind keeps a seal of
// one from ever passing as a seal of the other.
const SEAL_TAG = Buffer.from(`${FORMAT} seal\n`);

/** The record's hash: SHA-256 over every field but hash and seal, in a fixed encoding. */
export function auditHash(r: Omit<AuditRecord, 'hash' | 'seal'>): Buffer {
  const fields = [
    FORMAT, r.chain, r.seq, r.at.toISOString(), r.jobId, r.attempt, r.kind, r.keyId, r.algorithm,
    r.dataSha256?.toString('hex') ?? null, r.outcome, r.code, r.driverSubject, r.driverFingerprint, r.prevHash.toString('hex'),
  ];
  return createHash('sha256').update(JSON.stringify(fields)).digest();
}

/** The bytes the HSM seals for a record with this hash. */
export function sealInput(hash: Buffer): Buffer {
  return Buffer.concat([SEAL_TAG, hash]);
}

/** A record as one JSON object, for `audit export`. */
export function auditJson(r: AuditRecord): Record<string, unknown> {
  return {
    chain: r.chain, seq: r.seq, at: r.at.toISOString(), jobId: r.jobId, attempt: r.attempt, kind: r.kind,
    keyId: r.keyId, algorithm: r.algorithm, dataSha256: r.dataSha256?.toString('hex') ?? null,
    outcome: r.outcome, code: r.code, driverSubject: r.driverSubject, driverFingerprint: r.driverFingerprint,
    prevHash: r.prevHash.toString('hex'), hash: r.hash.toString('hex'), seal: r.seal?.toString('hex') ?? null,
  };
}
