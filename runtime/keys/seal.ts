// `hsm-driver keys seal`: gives every row written before row seals existed its seal, made in the
// HSM. Idempotent and resumable: sealed rows are skipped, so a second run (or one after a kill)
// only does what is left. A row changed by someone else between read and write is left alone.
import type { Logger } from 'pino';
import { localAuditTrail } from '../audit/trail.js';
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
  for (let after = ''; !stop?.aborted; ) {
    const page = await store.listKeys(after, PAGE);
    if (page.length === 0) break;
    const unsealed = page.filter((r) => r.seal === null);
    report.alreadySealed += page.length - unsealed.length;
    const seals = await hsm.sealRows(unsealed);
    const records: Array<Promise<void>> = [];
    for (const [i, row] of unsealed.entries()) {
      const done = await store.replaceKey(row, { ...row, seal: seals[i]! });
      if (done) report.sealed++;
      else report.changed++;
      // Appended together, so the page's records share a few commits.
      records.push(audit.append({ at: new Date(), jobId: 'keys-seal', attempt: 1, kind: 'keys-seal', keyId: row.keyId, algorithm: row.algorithm, dataSha256: null, outcome: done ? 'ok' : 'error', code: done ? null : 'ROW_CHANGED' }));
    }
    await Promise.all(records);
    after = page.at(-1)!.keyId;
    onPage(report);
  }
  return report;
}
