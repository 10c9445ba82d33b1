// `hsm-driver keys seal`: gives every row written before row seals existed its seal, made in the
// HSM. Idempotent and resumable: sealed rows are skipped, so a second run (or one after a kill)
// only does what is left. A row changed by someone else between read and write is left alone.
import type { Logger } from 'pino';
import { localAuditTrail } from '../audit/trail.js';
import { replaceWithAudit } from './replace.js';
import { pagesOf } from './walk.js';
import type { Hsm } from '../hsm/hsm.js';
import type { WrappedKeyStore } from '../store/store.js';

export interface SealReport {
  sealed: number;
  alreadySealed: number;
  /** Rows that changed between our read and our write: run again to seal them. */
  changed: number;
}

const PAGE = 500;

export async function sealRows(hsm: Hsm, store: WrappedKeyStore, log: Logger, onPage: (report: SealReport) => void = () => {}, stop?: AbortSignal): Promise<SealReport> {
  const report: SealReport = { sealed: 0, alreadySealed: 0, changed: 0 };
  const audit = localAuditTrail(store.audit, hsm, log);
  for await (const page of pagesOf(store, { size: PAGE })) {
    if (stop?.aborted) break;
    const unsealed = page.filter((r) => r.seal === null);
    report.alreadySealed += page.length - unsealed.length;
    const seals = await hsm.sealRows(unsealed);
    const changes = unsealed.map((row, i) => ({ expected: row, next: { ...row, seal: seals[i]! } }));
    // Each page is one transaction: its rows' seals and their audit records, or none of them.
    const replaced = await replaceWithAudit(store, audit, 'keys-seal', changes);
    report.sealed += replaced.length;
    report.changed += changes.length - replaced.length;
    onPage(report);
  }
  return report;
}
