// `hsm-driver keys import FILE [--reseal]`: adds the rows of a `keys export` file that the store
// lacks. Three passes over the file: (1) its checksum and every line, before anything else;
// (2) every row against the store and the HSM, still writing nothing: a keyId stored with other
// key material, a seal this token's integrity key does not confirm (without --reseal) or, with
// --reseal, a key this token cannot unwrap and sign with, refuses the whole import; (3) the
// inserts, a batch and its audit records per transaction. Nothing stored is ever overwritten:
// rows are inserted only where absent, and a row that appeared meanwhile is reported, not replaced.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { localAuditTrail } from '../audit/trail.js';
import { ConfigError, DriverError } from '../errors.js';
import type { Hsm } from '../hsm/hsm.js';
import { rowSealInput } from '../hsm/row-seal.js';
import type { KeyRecord, WrappedKeyStore } from '../store/store.js';
import { Checksum, ExportFileError, parseHeader, parseRowLine, parseTrailer, type ExportHeader } from './backup-file.js';
import type { Progress } from './progress.js';
import { checkKey } from './verify.js';

const BATCH = 500;

export interface ImportOptions {
  /** Seal rows here whose seals this token cannot confirm (from another token), after a test sign. */
  reseal: boolean;
  stop?: AbortSignal;
  /** A progress reporter per pass: 'check', then 'write'. */
  progress?: (pass: 'check' | 'write') => Progress;
}

export interface RowProblem {
  keyId: string;
  reason: string;
}

export interface ImportReport {
  header?: ExportHeader;
  /** The file itself was refused (damaged, cut short, not an export): nothing was read into the store. */
  badFile?: string;
  rows: number;
  inserted: number;
  resealed: number;
  insertedUnsealed: number;
  identical: number;
  /** Stored already with the same key material but another seal or creation time: left as stored. */
  sameKey: number;
  conflicts: RowProblem[];
  badSeals: RowProblem[];
  unusable: RowProblem[];
  /** Whether pass 3 began (anything may have been written). */
  wrote: boolean;
  /** Stopped by a signal between batches, with rows left to check or write. */
  stopped: boolean;
}

/** What pass 2 decided for a row to insert: the seal to store, and the line it came from. */
interface Planned {
  seal: Buffer | null;
  resealed: boolean;
  lineSha256: string;
}

export async function importKeys(hsm: Hsm, store: WrappedKeyStore, file: string, log: Logger, o: ImportOptions): Promise<ImportReport> {
  const report: ImportReport = { rows: 0, inserted: 0, resealed: 0, insertedUnsealed: 0, identical: 0, sameKey: 0, conflicts: [], badSeals: [], unusable: [], wrote: false, stopped: false };
  try {
    const checked = await checkFile(file);
    report.header = checked.header;
    report.rows = checked.rows;
  } catch (err) {
    if (!(err instanceof ExportFileError)) throw err;
    report.badFile = err.message;
    return report;
  }
  const plan = await planRows(hsm, store, file, report, o);
  if (report.stopped || report.conflicts.length + report.badSeals.length + report.unusable.length > 0) return report;
  report.wrote = true;
  await writeRows(hsm, store, file, plan, report, log, o);
  return report;
}

/** The file's lines after the header, as rows, in batches; the trailer is left out. */
async function* rowBatches(file: string, rows: number): AsyncGenerator<Array<{ row: KeyRecord; line: string }>> {
  let batch: Array<{ row: KeyRecord; line: string }> = [];
  let lineNo = 0;
  for await (const line of readLines(file)) {
    lineNo++;
    if (lineNo === 1) continue;
    if (lineNo > rows + 1) break;
    batch.push({ row: parseRowLine(line, lineNo), line });
    if (batch.length === BATCH) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function readLines(file: string): AsyncIterable<string> {
  const input = createReadStream(file);
  input.on('error', () => {}); // readline rethrows it from the loop
  return createInterface({ input, crlfDelay: Infinity });
}

/** Pass 1: header, every row, the trailer and the checksum; throws ExportFileError. */
async function checkFile(file: string): Promise<{ header: ExportHeader; rows: number }> {
  const sum = new Checksum();
  const keyIds = new Set<string>();
  let header: ExportHeader | undefined;
  let pending: string | undefined;
  let lineNo = 0;
  try {
    for await (const line of readLines(file)) {
      if (pending !== undefined) {
        sum.add(pending);
        if (lineNo > 1) {
          const { keyId } = parseRowLine(pending, lineNo);
          if (keyIds.has(keyId)) throw new ExportFileError(`line ${lineNo}: keyId ${keyId} appears twice`);
          keyIds.add(keyId);
        }
      }
      lineNo++;
      if (lineNo === 1) header = parseHeader(line);
      pending = line;
    }
  } catch (err) {
    if (err instanceof ExportFileError) throw err;
    throw new ConfigError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!header || lineNo < 2) throw new ExportFileError('the file does not end with its checksum line: it was cut short or is not a keys export');
  const trailer = parseTrailer(pending);
  if (trailer.checksum !== sum.hex()) throw new ExportFileError('checksum mismatch: the file was changed or damaged after export');
  if (trailer.rows !== keyIds.size || header.counts.rows !== keyIds.size) throw new ExportFileError(`the file holds ${keyIds.size} rows but says ${trailer.rows}`);
  return { header, rows: keyIds.size };
}

/** Pass 2: decides every row, writing nothing. */
async function planRows(hsm: Hsm, store: WrappedKeyStore, file: string, report: ImportReport, o: ImportOptions): Promise<Map<string, Planned>> {
  const plan = new Map<string, Planned>();
  const progress = o.progress?.('check');
  progress?.start(report.rows);
  let done = 0;
  try {
    for await (const batch of rowBatches(file, report.rows)) {
      if (o.stop?.aborted) {
        report.stopped = true;
        break;
      }
      const stored = await Promise.all(batch.map(({ row }) => store.get(row.keyId)));
      const absent = batch.filter(({ row }, i) => {
        const existing = stored[i];
        if (existing) classifyExisting(report, row, existing);
        return !existing;
      });
      const sealed = absent.filter(({ row }) => row.seal !== null);
      const verdicts = sealed.length ? await hsm.verifySeals(sealed.map(({ row }) => ({ data: rowSealInput(row), mac: row.seal! }))) : [];
      const toReseal: typeof absent = [];
      const digest = (line: string) => createHash('sha256').update(line).digest('hex');
      sealed.forEach((item, i) => {
        if (verdicts[i]) plan.set(item.row.keyId, { seal: item.row.seal, resealed: false, lineSha256: digest(item.line) });
        else if (o.reseal) toReseal.push(item);
        else report.badSeals.push({ keyId: item.row.keyId, reason: 'its seal does not verify under this token\'s integrity key: changed, or sealed by another token (then use --reseal)' });
      });
      for (const item of absent.filter(({ row }) => row.seal === null)) {
        if (o.reseal) toReseal.push(item);
        else plan.set(item.row.keyId, { seal: null, resealed: false, lineSha256: digest(item.line) });
      }
      await resealPlan(hsm, toReseal, plan, report, digest);
      done += batch.length;
      progress?.update(done, { conflicts: report.conflicts.length, refused: report.badSeals.length + report.unusable.length });
    }
  } finally {
    progress?.stop();
  }
  return plan;
}

/**
 * --reseal vouches for a row under this token's integrity key, so it first proves the row
 * usable here: sealed afresh, then signed with through the HSM's own path (seal check, unwrap,
 * sign) and verified against its public key. The keyId binding is taken from the file.
 */
async function resealPlan(hsm: Hsm, items: Array<{ row: KeyRecord; line: string }>, plan: Map<string, Planned>, report: ImportReport, digest: (line: string) => string): Promise<void> {
  if (items.length === 0) return;
  const seals = await hsm.sealRows(items.map(({ row }) => row));
  const failures = await Promise.all(items.map(({ row }, i) => checkKey(hsm, { ...row, seal: seals[i]! })));
  failures.forEach((failure, i) => {
    const { row, line } = items[i]!;
    if (failure?.code === 'HSM_UNAVAILABLE' || failure?.code === 'DATABASE_UNAVAILABLE') throw new DriverError(failure.code, `the HSM or database failed while checking ${row.keyId}: ${failure.reason}; nothing was written: run it again`);
    if (failure) report.unusable.push({ keyId: row.keyId, reason: `not usable on this token, so not resealed: ${failure.code}: ${failure.reason}` });
    else plan.set(row.keyId, { seal: seals[i]!, resealed: true, lineSha256: digest(line) });
  });
}

/** The fields a seal covers, named, for saying how a stored row differs from the file's. */
const KEY_FIELDS = ['algorithm', 'publicKeyDer', 'wrappedKey', 'residentId', 'wrapMechanism', 'masterKeyLabel'] as const;

function classifyExisting(report: ImportReport, row: KeyRecord, stored: KeyRecord): void {
  if (!rowSealInput(row).equals(rowSealInput(stored))) {
    const differ = KEY_FIELDS.filter((f) => !rowSealInput({ ...row, [f]: stored[f] }).equals(rowSealInput(row)));
    report.conflicts.push({ keyId: row.keyId, reason: `stored with other key material (${differ.join(', ')}); never overwritten` });
    return;
  }
  const sameSeal = (row.seal === null && stored.seal === null) || (row.seal !== null && stored.seal !== null && row.seal.equals(stored.seal));
  if (sameSeal && row.createdAt.getTime() === stored.createdAt.getTime()) report.identical++;
  else report.sameKey++;
}

/** Pass 3: inserts what pass 2 planned, from the same file (a line that changed since is refused). */
async function writeRows(hsm: Hsm, store: WrappedKeyStore, file: string, plan: Map<string, Planned>, report: ImportReport, log: Logger, o: ImportOptions): Promise<void> {
  const audit = localAuditTrail(store.audit, hsm, log);
  const progress = o.progress?.('write');
  progress?.start(plan.size);
  try {
    for await (const batch of rowBatches(file, report.rows)) {
      if (o.stop?.aborted) {
        report.stopped = true;
        break;
      }
      const planned = batch.filter(({ row }) => plan.has(row.keyId));
      if (planned.length === 0) continue;
      for (const { row, line } of planned) {
        if (plan.get(row.keyId)!.lineSha256 !== createHash('sha256').update(line).digest('hex')) throw new DriverError('INVALID_INPUT', `${file} changed during the import (at ${row.keyId}); run it again`);
      }
      // Each batch is one transaction: its new rows and their audit records, or none of them.
      const outcomes = await audit.commitWith((recordsFor) =>
        store.insertKeysWithAudit(
          planned.map(({ row }) => ({ ...row, seal: plan.get(row.keyId)!.seal })),
          (inserted) => recordsFor(inserted.map((r) => ({ at: new Date(), jobId: 'keys-import', attempt: 1, kind: plan.get(r.keyId)!.resealed ? 'keys-import-resealed' : 'keys-import', keyId: r.keyId, algorithm: r.algorithm, dataSha256: null, outcome: 'ok', code: null }))),
        ),
      );
      outcomes.forEach(({ inserted, stored }, i) => {
        const { row } = planned[i]!;
        const { resealed, seal } = plan.get(row.keyId)!;
        // Stored meanwhile by someone else: identical, or a conflict to report; never replaced.
        if (!inserted) return classifyExisting(report, { ...row, seal }, stored);
        report.inserted++;
        if (resealed) report.resealed++;
        if (seal === null) report.insertedUnsealed++;
      });
      progress?.update(report.inserted, { skipped: report.identical + report.sameKey, conflicts: report.conflicts.length });
    }
  } finally {
    progress?.stop();
  }
}

/** The report as printed; `ok` when every row is stored as the file has it (or was already). */
export function importReportLines(r: ImportReport, file: string, hsm: Hsm): { lines: string[]; ok: boolean } {
  if (r.badFile) return { lines: [`keys import: ${file} refused, nothing imported: ${r.badFile}`], ok: false };
  const lines: string[] = [];
  const h = r.header!;
  lines.push(`keys import: ${file}: ${r.rows} rows exported from ${h.store} at ${h.exportedAt}; master keys ${h.masterKeys.join(', ') || 'none'}; mechanisms ${h.mechanisms.join(', ') || 'none'}`);
  const foreign = h.masterKeys.filter((label) => label !== hsm.masterKeyLabel);
  if (foreign.length) lines.push(`  warning: rows wrapped under master key ${foreign.join(', ')}, not this driver's "${hsm.masterKeyLabel}": they sign only where that key is held (keys verify tells)`);
  if (h.counts.resident > 0) lines.push(`  warning: ${h.counts.resident} resident rows: their keys are objects on the token that made them, not in the file`);
  for (const c of r.conflicts) lines.push(`  CONFLICT ${c.keyId}: ${c.reason}`);
  for (const b of r.badSeals) lines.push(`  REFUSED ${b.keyId}: ${b.reason}`);
  for (const u of r.unusable) lines.push(`  REFUSED ${u.keyId}: ${u.reason}`);
  const refused = r.conflicts.length + r.badSeals.length + r.unusable.length;
  if (!r.wrote && refused > 0) {
    lines.push(`keys import: refused, nothing written: ${r.conflicts.length} conflicts, ${r.badSeals.length + r.unusable.length} rows refused (${r.identical + r.sameKey} already stored)`);
    return { lines, ok: false };
  }
  if (!r.wrote) {
    lines.push('keys import: stopped while checking, before writing anything: run it again');
    return { lines, ok: false };
  }
  if (r.insertedUnsealed > 0) lines.push(`  warning: ${r.insertedUnsealed} rows imported unsealed, as exported; seal them with keys seal (or import with --reseal)`);
  if (r.stopped) lines.push(`keys import: stopped after ${r.inserted} rows were written: run the same command again (rows already imported are skipped)`);
  lines.push(
    `keys import: ${r.inserted} rows imported (${r.resealed} resealed here, ${r.insertedUnsealed} unsealed), ${r.identical} identical skipped, ${r.sameKey} same key kept as stored, ${r.conflicts.length} conflicts`,
  );
  return { lines, ok: refused === 0 && !r.stopped };
}
