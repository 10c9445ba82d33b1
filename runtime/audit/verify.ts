// `audit verify`: walks every chain in seq order and checks, for each record, that it follows
// the one before it (seq and prev_hash), that its hash matches its content, and that its seal
// verifies inside the HSM. The first record that fails is named, with why.
import type { AuditLog } from '../store/store.js';
import { auditHash, GENESIS, sealInput, type AuditRecord } from './record.js';

export interface SealChecker {
  verifySeals(items: ReadonlyArray<{ data: Buffer; mac: Buffer }>): Promise<boolean[]>;
}

export interface ChainReport {
  chain: string;
  /** Records checked and found good, up to the first bad one. */
  good: number;
  /** The last good record: worth keeping outside the database, since a cut tail leaves no gap. */
  head?: { seq: number; hash: string; at: string };
  firstBad?: { seq: number; jobId: string; reason: string };
}

const PAGE = 1000;

export async function verifyAudit(log: AuditLog, hsm: SealChecker, onPage: (checked: number) => void = () => {}): Promise<ChainReport[]> {
  const reports: ChainReport[] = [];
  for (const chain of await log.chains()) {
    const report: ChainReport = { chain, good: 0 };
    reports.push(report);
    let prev: AuditRecord | undefined;
    for (let afterSeq = 0; !report.firstBad; ) {
      const page = await log.read({ chain, afterSeq, limit: PAGE });
      if (page.length === 0) break;
      const sealed = page.filter((r) => r.seal !== null);
      const verdicts = await hsm.verifySeals(sealed.map((r) => ({ data: sealInput(r.hash), mac: r.seal! })));
      const sealOk = new Map(sealed.map((r, i) => [r, verdicts[i]!]));
      for (const r of page) {
        const reason = faultOf(r, prev, sealOk.get(r));
        if (reason) {
          report.firstBad = { seq: r.seq, jobId: r.jobId, reason };
          break;
        }
        report.good++;
        report.head = { seq: r.seq, hash: r.hash.toString('hex'), at: r.at.toISOString() };
        prev = r;
      }
      afterSeq = page.at(-1)!.seq;
      onPage(page.length);
    }
  }
  return reports;
}

function faultOf(r: AuditRecord, prev: AuditRecord | undefined, sealOk: boolean | undefined): string | undefined {
  const expected = (prev?.seq ?? 0) + 1;
  if (r.seq !== expected) return `expected seq ${expected} next: records are missing or re-ordered`;
  if (!r.prevHash.equals(prev?.hash ?? GENESIS)) return 'its prev_hash is not the hash of the record before it: records are missing or re-ordered';
  let hash: Buffer;
  try {
    hash = auditHash(r);
  } catch {
    return 'its fields cannot be read (a bad time?): edited';
  }
  if (!hash.equals(r.hash)) return 'its hash does not match its content: edited';
  if (sealOk === undefined) return 'it is not sealed (written while the token had no integrity key)';
  if (!sealOk) return 'its seal does not verify in the HSM: edited, or its chain recomputed without the HSM';
  return undefined;
}
