// The file `keys export` writes and `keys import` reads: JSON lines, a header, one line per key
// row (public key, wrapped blob or resident id, seal: bytes in base64; nothing secret), and a
// trailer holding the SHA-256 of every line before it. The checksum finds a damaged or cut file;
// it proves nothing about who wrote it (anyone can recompute it): the rows' HSM seals do that.
import { createHash, type Hash } from 'node:crypto';
import { isAlgorithm } from '../crypto/algorithms.js';
import type { KeyRecord } from '../store/store.js';

export const FORMAT = 'hsm-driver-keys';
export const FORMAT_VERSION = 1;

export interface ExportCounts {
  rows: number;
  sealed: number;
  unsealed: number;
  wrapped: number;
  resident: number;
  byAlgorithm: Record<string, number>;
}

export interface ExportHeader {
  format: typeof FORMAT;
  version: typeof FORMAT_VERSION;
  exportedAt: string;
  /** The kind of store the rows came from. */
  store: 'sqlite' | 'postgres';
  counts: ExportCounts;
  /** Labels of the master keys the blobs are wrapped under: a token that imports them needs these. */
  masterKeys: string[];
  /** Wrap mechanisms of the blobs. */
  mechanisms: string[];
}

export interface ExportTrailer {
  rows: number;
  /** SHA-256, hex, over every line before this one, each with its newline. */
  checksum: string;
}

/** The file is not a whole, intact export: nothing is imported from it. */
export class ExportFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExportFileError';
  }
}

export function emptyCounts(): ExportCounts {
  return { rows: 0, sealed: 0, unsealed: 0, wrapped: 0, resident: 0, byAlgorithm: {} };
}

export function countRow(c: ExportCounts, r: KeyRecord): void {
  c.rows++;
  if (r.seal) c.sealed++;
  else c.unsealed++;
  if (r.residentId) c.resident++;
  else c.wrapped++;
  c.byAlgorithm[r.algorithm] = (c.byAlgorithm[r.algorithm] ?? 0) + 1;
}

/** Every line of the file goes through one of these, so the trailer's checksum covers it. */
export class Checksum {
  private readonly hash: Hash = createHash('sha256');
  add(line: string): void {
    this.hash.update(line).update('\n');
  }
  hex(): string {
    return this.hash.copy().digest('hex');
  }
}

const b64 = (b: Buffer | null) => b?.toString('base64') ?? null;

export function rowLine(r: KeyRecord): string {
  return JSON.stringify({
    keyId: r.keyId,
    algorithm: r.algorithm,
    publicKeyDer: b64(r.publicKeyDer),
    wrappedKey: b64(r.wrappedKey),
    residentId: b64(r.residentId),
    wrapMechanism: r.wrapMechanism,
    masterKeyLabel: r.masterKeyLabel,
    createdAt: r.createdAt.toISOString(),
    seal: b64(r.seal),
  });
}

const KEY_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A row line back to a record; throws ExportFileError naming the line and field. */
export function parseRowLine(line: string, lineNo: number): KeyRecord {
  const bad = (why: string) => new ExportFileError(`line ${lineNo}: ${why}`);
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw bad('not JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw bad('not a key row');
  const bytes = (field: string, nullable: boolean): Buffer | null => {
    const v = o[field];
    if (v === null && nullable) return null;
    if (typeof v !== 'string' || !BASE64.test(v) || v.length % 4 !== 0) throw bad(`${field} is not base64`);
    return Buffer.from(v, 'base64');
  };
  const text = (field: string, nullable: boolean): string | null => {
    const v = o[field];
    if (v === null && nullable) return null;
    if (typeof v !== 'string' || v === '') throw bad(`${field} is missing`);
    return v;
  };
  const keyId = text('keyId', false)!;
  if (!KEY_ID.test(keyId)) throw bad('keyId is not 1 to 128 characters of [A-Za-z0-9._:-]');
  const algorithm = o.algorithm;
  if (!isAlgorithm(algorithm)) throw bad(`${keyId}: unknown algorithm`);
  const createdAt = new Date(text('createdAt', false)!);
  if (Number.isNaN(createdAt.getTime())) throw bad(`${keyId}: createdAt is not a time`);
  const record: KeyRecord = {
    keyId,
    algorithm,
    publicKeyDer: bytes('publicKeyDer', false)!,
    wrappedKey: bytes('wrappedKey', true),
    residentId: bytes('residentId', true),
    wrapMechanism: text('wrapMechanism', true),
    masterKeyLabel: text('masterKeyLabel', false)!,
    createdAt,
    seal: bytes('seal', true),
  };
  if ((record.wrappedKey === null) === (record.residentId === null)) throw bad(`${keyId}: exactly one of wrappedKey and residentId must be set`);
  if ((record.wrappedKey === null) !== (record.wrapMechanism === null)) throw bad(`${keyId}: a wrapped key needs its wrapMechanism, a resident one none`);
  if (record.publicKeyDer.length === 0) throw bad(`${keyId}: publicKeyDer is empty`);
  return record;
}

/** The header line, checked: format, version and shape. */
export function parseHeader(line: string | undefined): ExportHeader {
  let h: Partial<ExportHeader>;
  try {
    h = JSON.parse(line ?? '') as Partial<ExportHeader>;
  } catch {
    throw new ExportFileError('line 1 is not a JSON header: not a keys export');
  }
  if (h?.format !== FORMAT) throw new ExportFileError(`line 1 is not a ${FORMAT} header: not a keys export`);
  if (h.version !== FORMAT_VERSION) throw new ExportFileError(`export format version ${String(h.version)} is not one this driver reads (${FORMAT_VERSION})`);
  if (typeof h.counts?.rows !== 'number' || !Array.isArray(h.masterKeys) || !Array.isArray(h.mechanisms)) throw new ExportFileError('the header lacks counts, masterKeys or mechanisms');
  return h as ExportHeader;
}

export function parseTrailer(line: string | undefined): ExportTrailer {
  let t: Partial<ExportTrailer> | undefined;
  try {
    t = JSON.parse(line ?? '') as Partial<ExportTrailer>;
  } catch {
    t = undefined;
  }
  if (typeof t?.checksum !== 'string' || typeof t.rows !== 'number') throw new ExportFileError('the file does not end with its checksum line: it was cut short or is not a keys export');
  return t as ExportTrailer;
}
