// The one interface every key store implements; SQL lives only in the files beside this one.
import type { AuditRecord } from '../audit/record.js';
import type { Algorithm } from '../crypto/algorithms.js';

/** One stored key. Exactly one of wrappedKey (stateless mode) or residentId (token object) is set. */
export interface KeyRecord {
  keyId: string;
  algorithm: Algorithm;
  /** SubjectPublicKeyInfo, DER. */
  publicKeyDer: Buffer;
  /** RFC 5649/3394 wrap of the PKCS#8 private key under the master key. */
  wrappedKey: Buffer | null;
  /** CKA_ID of a non-extractable token object, for algorithms kept resident in the HSM. */
  residentId: Buffer | null;
  /** Name of the wrap mechanism used for wrappedKey (see runtime/hsm/mechanisms.ts). */
  wrapMechanism: string | null;
  /** Label of the master key that wrapped it (or that was in force for a resident key). */
  masterKeyLabel: string;
  createdAt: Date;
  /** HMAC-SHA256 of the row's key fields, made in the HSM (runtime/hsm/row-seal.ts); null for rows written before seals. */
  seal: Buffer | null;
}

export interface InsertOutcome {
  /** The row now stored for the keyId: ours, or the one another driver committed first. */
  stored: KeyRecord;
  /** True when our row was the one written. */
  inserted: boolean;
}

export interface WrappedKeyStore {
  readonly kind: 'sqlite' | 'postgres';
  get(keyId: string): Promise<KeyRecord | undefined>;
  /** Commits the row unless the keyId exists; atomic against other drivers on the same database. */
  insertIfAbsent(record: KeyRecord): Promise<InsertOutcome>;
  countKeys(): Promise<number>;
  /** Up to `limit` rows with keyId after `afterKeyId`, in keyId order (for commands that walk every key). */
  listKeys(afterKeyId: string, limit: number): Promise<KeyRecord[]>;
  /**
   * Replaces a row with `next` (same keyId) only if it is still exactly `expected`: a row another
   * process changed since it was read is left alone. Returns whether the row was replaced.
   */
  replaceKey(expected: KeyRecord, next: KeyRecord): Promise<boolean>;
  /**
   * replaceKey for several rows and their audit records in one transaction: the rows still as
   * expected are replaced, `recordsFor` is given those (the `next` rows) and returns their
   * records, and all of it commits together or not at all. Returns the rows replaced.
   */
  replaceKeysWithAudit(changes: ReadonlyArray<{ expected: KeyRecord; next: KeyRecord }>, recordsFor: (replaced: KeyRecord[]) => Promise<AuditRecord[]>): Promise<KeyRecord[]>;
  /**
   * insertIfAbsent for several rows and their audit records in one transaction (`keys import`):
   * `recordsFor` is given the rows that were inserted and returns their records, and all of it
   * commits together or not at all. One outcome per row, in order; a stored row is never changed.
   */
  insertKeysWithAudit(rows: readonly KeyRecord[], recordsFor: (inserted: KeyRecord[]) => Promise<AuditRecord[]>): Promise<InsertOutcome[]>;
  /** A cheap round trip, for health and the readiness gate. */
  ping(): Promise<void>;
  close(): Promise<void>;
  /** The audit trail, in the same database as the keys. */
  readonly audit: AuditLog;
}

/** Which audit records to read: one chain from a sequence number on, optionally filtered. */
export interface AuditQuery {
  chain: string;
  /** Records with seq greater than this. */
  afterSeq: number;
  limit: number;
  since?: Date;
  keyId?: string;
}

/** Append-only storage of audit records; SQL beside this file, hashing and sealing in runtime/audit/. */
export interface AuditLog {
  /** Commits the records in one transaction, or none of them. */
  append(records: readonly AuditRecord[]): Promise<void>;
  /** The last committed record of a chain (to continue it after a failed commit), if any. */
  head(chain: string): Promise<{ seq: number; hash: Buffer } | undefined>;
  /** Every chain id, in a stable order. */
  chains(): Promise<string[]>;
  /** Records of one chain in seq order. */
  read(query: AuditQuery): Promise<AuditRecord[]>;
}
