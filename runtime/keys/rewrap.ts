// `hsm-driver keys rewrap`: moves every wrapped row to another master key (master-key rotation)
// or wrap mechanism, inside the HSM, while drivers keep signing. Per row: the seal is checked,
// the key is unwrapped under the row's master key and wrapped under the new one, the new blob
// must sign and verify against the stored public key, and only then is the row replaced — in
// one transaction with its audit record, and only if the row is still the one that was read.
// Rows already at the target are skipped, so a second run, or one after a kill, does only
// what is left, and two runs at once never replace a row twice.
import type { Logger } from 'pino';
import { localAuditTrail } from '../audit/trail.js';
import { ConfigError } from '../errors.js';
import type { Hsm } from '../hsm/hsm.js';
import { parseWrapMechanism } from '../hsm/mechanisms.js';
import type { KeyRecord, WrappedKeyStore } from '../store/store.js';
import { replaceWithAudit } from './replace.js';
import { signAndVerify } from './test-sign.js';
import { pagesOf } from './walk.js';

export interface RewrapOptions {
  toMasterKey?: string | undefined;
  toMechanism?: string | undefined;
  dryRun?: boolean;
}

export interface RewrapReport {
  rewrapped: number;
  /** Already under the target master key and mechanism (done earlier, or by another run). */
  alreadyDone: number;
  /** Resident keys have no blob to rewrap: reported, not touched. */
  resident: number;
  /** Rows another process changed between our read and our write; a second run looks again. */
  changed: number;
  failed: Array<{ keyId: string; reason: string }>;
  /** "from label/mechanism → to label/mechanism": rows (to do, with --dry-run; done, otherwise). */
  moves: Record<string, number>;
}

const BATCH = 100;

type WrappedRow = KeyRecord & { wrappedKey: Buffer; wrapMechanism: string };

export async function rewrapRows(hsm: Hsm, store: WrappedKeyStore, log: Logger, o: RewrapOptions, onBatch: (r: RewrapReport) => void = () => {}, stop?: AbortSignal): Promise<RewrapReport> {
  if (!o.toMasterKey && !o.toMechanism) throw new ConfigError('keys rewrap needs --to-master-key LABEL and/or --to-mechanism NAME');
  const toMechanism = o.toMechanism === undefined ? undefined : parseWrapMechanism(o.toMechanism);
  if (o.toMasterKey) await hsm.checkMasterKeyLabel(o.toMasterKey);
  const targetOf = (row: WrappedRow) => ({ masterKeyLabel: o.toMasterKey ?? row.masterKeyLabel, wrapMechanism: toMechanism ?? row.wrapMechanism });
  const report: RewrapReport = { rewrapped: 0, alreadyDone: 0, resident: 0, changed: 0, failed: [], moves: {} };
  const audit = localAuditTrail(store.audit, hsm, log);

  for await (const page of pagesOf(store, { size: BATCH })) {
    if (stop?.aborted) break;
    const changes: Array<{ expected: KeyRecord; next: KeyRecord }> = [];
    for (const row of page) {
      if (!row.wrappedKey || !row.wrapMechanism) {
        report.resident++;
        continue;
      }
      const wrapped = row as WrappedRow;
      const target = targetOf(wrapped);
      if (target.masterKeyLabel === row.masterKeyLabel && target.wrapMechanism === row.wrapMechanism) {
        report.alreadyDone++;
        continue;
      }
      if (o.dryRun) {
        countMove(report, row, target);
        continue;
      }
      try {
        const next: KeyRecord = { ...row, ...target, wrappedKey: await hsm.rewrapBlob(wrapped, target), seal: null };
        next.seal = (await hsm.sealRows([next]))[0]!;
        await signAndVerify(hsm, next);
        changes.push({ expected: row, next });
      } catch (err) {
        report.failed.push({ keyId: row.keyId, reason: (err as Error).message });
      }
    }
    if (changes.length > 0) {
      const replaced = await replaceWithAudit(store, audit, 'keys-rewrap', changes);
      report.rewrapped += replaced.length;
      for (const { expected, next } of changes) {
        if (!replaced.includes(next)) {
          // Another run (a second rewrap) got there first, or something else changed the row.
          const now = await store.get(expected.keyId);
          const doneElsewhere = now?.wrappedKey && now.masterKeyLabel === next.masterKeyLabel && now.wrapMechanism === next.wrapMechanism;
          if (doneElsewhere) report.alreadyDone++;
          else report.changed++;
          continue;
        }
        countMove(report, expected, next);
      }
    }
    onBatch(report);
  }
  return report;
}

type Placement = Pick<KeyRecord, 'masterKeyLabel' | 'wrapMechanism'>;

function countMove(report: RewrapReport, from: Placement, to: Placement): void {
  const move = `${from.masterKeyLabel}/${from.wrapMechanism} → ${to.masterKeyLabel}/${to.wrapMechanism}`;
  report.moves[move] = (report.moves[move] ?? 0) + 1;
}

/** The report as lines: what moved (or would), what was left, every failure, and how to go on. */
export function rewrapReportLines(r: RewrapReport, dryRun: boolean, stopped: boolean): string[] {
  const lines = Object.entries(r.moves).map(([move, n]) => `  ${move}: ${n} rows${dryRun ? ' to rewrap' : ''}`);
  for (const f of r.failed) lines.push(`  FAILED ${f.keyId}: ${f.reason}`);
  const head = dryRun
    ? `keys rewrap --dry-run: ${Object.values(r.moves).reduce((a, b) => a + b, 0)} rows would be rewrapped, ${r.alreadyDone} already there, ${r.resident} resident (not touched)`
    : `keys rewrap: ${r.rewrapped} rewrapped, ${r.alreadyDone} already done, ${r.resident} resident (not touched), ${r.changed} changed by another process, ${r.failed.length} failed`;
  const tail: string[] = [];
  if (r.changed > 0) tail.push('keys rewrap: rows changed while we worked on them: run it again to check them');
  if (stopped) tail.push('keys rewrap: stopped between batches; run the same command again to finish (rewrapped rows are skipped)');
  return [head, ...lines, ...tail];
}
