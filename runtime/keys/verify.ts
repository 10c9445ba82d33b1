// `hsm-driver keys verify`, the DR drill: unwraps and signs with every stored key (or a random
// sample) through the HSM's own sign path (row seal checked in the HSM, unwrap, sign, destroy),
// and verifies each signature in software against the stored public key. Run against a second
// token holding only a copy of the master key, it proves that token can take over.
import type { Logger } from 'pino';
import { localAuditTrail } from '../audit/trail.js';
import { ConfigError, DriverError, toWireError, type ErrorCode } from '../errors.js';
import type { Hsm } from '../hsm/hsm.js';
import type { KeyRecord, WrappedKeyStore } from '../store/store.js';
import type { Progress } from './progress.js';
import { signAndVerify } from './test-sign.js';
import { countAfter, pagesOf } from './walk.js';

/** Rows signed per batch: small enough for Ctrl-C to answer within a second or so. */
const PAGE = 100;

/** Failures of the HSM or database themselves: every later key would fail too, so the walk stops. */
const INFRASTRUCTURE: ReadonlySet<ErrorCode> = new Set(['HSM_UNAVAILABLE', 'DATABASE_UNAVAILABLE']);

export type Sample = { count: number } | { fraction: number };

/** `--sample 50` (keys), `--sample 0.1` or `--sample 10%` (a fraction of them). */
export function parseSample(text: string): Sample {
  const t = text.trim();
  if (/^\d+$/.test(t) && Number(t) >= 1) return { count: Number(t) };
  const fraction = t.endsWith('%') ? Number(t.slice(0, -1)) / 100 : Number(t);
  if (!/^\d*\.?\d+%?$/.test(t) || !(fraction > 0 && fraction <= 1)) {
    throw new ConfigError(`--sample must be a number of keys (50), a fraction (0.1) or a percentage (10%), got "${text}"`);
  }
  return { fraction };
}

export interface Tally {
  passed: number;
  failed: number;
}

export interface KeyFailure {
  keyId: string;
  code: ErrorCode;
  reason: string;
}

export interface VerifyReport {
  /** Keys the run set out to check (all, or the sample's size). */
  total: number;
  /** The keyId a resumed run started after. */
  after: string | undefined;
  sampled: boolean;
  passed: number;
  failed: number;
  byAlgorithm: Record<string, Tally>;
  byMasterKey: Record<string, Tally>;
  failures: KeyFailure[];
  /** The last keyId of the last finished page: `--after` resumes after it. */
  lastKeyId: string | undefined;
  /** Stopped by a signal between pages, with keys left to check. */
  stopped: boolean;
  /** The HSM or database failed under the walk; the reason. */
  brokenBy?: string;
}

export interface VerifyOptions {
  sample?: Sample;
  after?: string;
  stop?: AbortSignal;
  progress?: Progress;
}

export async function verifyKeys(hsm: Hsm, store: WrappedKeyStore, log: Logger, o: VerifyOptions = {}): Promise<VerifyReport> {
  if (o.sample && o.after !== undefined) throw new ConfigError('--after resumes a walk over every key; a sample is random: run it again instead');
  const all = o.after === undefined ? await store.countKeys() : await countAfter(store, o.after);
  const chosen = o.sample ? pickIndexes(o.sample, all) : undefined;
  const report: VerifyReport = { total: chosen?.size ?? all, after: o.after, sampled: chosen !== undefined, passed: 0, failed: 0, byAlgorithm: {}, byMasterKey: {}, failures: [], lastKeyId: undefined, stopped: false };
  const audit = localAuditTrail(store.audit, hsm, log);
  o.progress?.start(report.total);
  let index = 0;
  try {
    for await (const page of pagesOf(store, { after: o.after, size: PAGE })) {
      if (o.stop?.aborted) {
        report.stopped = true;
        break;
      }
      const rows = chosen ? page.filter(() => chosen.has(index++)) : page;
      const results = await Promise.all(rows.map((row) => checkKey(hsm, row)));
      const broken = results.find((failure) => failure && INFRASTRUCTURE.has(failure.code));
      if (broken) {
        report.brokenBy = `${broken.code}: ${broken.reason}`;
        break;
      }
      const records: Array<Promise<void>> = [];
      results.forEach((failure, i) => {
        const row = rows[i]!;
        tally(report, row, failure);
        if (failure) records.push(audit.append({ at: new Date(), jobId: 'keys-verify', attempt: 1, kind: 'keys-verify', keyId: row.keyId, algorithm: row.algorithm, dataSha256: null, outcome: 'error', code: failure.code }));
      });
      await Promise.all(records);
      report.lastKeyId = page.at(-1)!.keyId;
      o.progress?.update(report.passed + report.failed, { failed: report.failed });
    }
  } finally {
    o.progress?.stop();
  }
  return report;
}

/** Signs a fresh challenge with one stored key in the HSM and verifies it; the failure, if any. */
export async function checkKey(hsm: Hsm, row: KeyRecord): Promise<KeyFailure | undefined> {
  try {
    await signAndVerify(hsm, row);
    return undefined;
  } catch (err) {
    if (err instanceof DriverError) {
      const { code, message } = toWireError(err, [hsm.config.pin]);
      return { keyId: row.keyId, code, reason: message };
    }
    // Our own code's words (a stored public key that does not parse, …): worth showing the operator.
    const reason = toWireError(new DriverError('INTERNAL', (err as Error)?.message ?? String(err)), [hsm.config.pin]).message;
    return { keyId: row.keyId, code: 'INTERNAL', reason };
  }
}

function tally(report: VerifyReport, row: KeyRecord, failure: KeyFailure | undefined): void {
  const add = (table: Record<string, Tally>, name: string) => {
    const t = (table[name] ??= { passed: 0, failed: 0 });
    if (failure) t.failed++;
    else t.passed++;
  };
  add(report.byAlgorithm, row.algorithm);
  add(report.byMasterKey, row.masterKeyLabel);
  if (failure) {
    report.failed++;
    report.failures.push(failure);
  } else report.passed++;
}

/** Distinct random positions among `total` rows (Floyd's algorithm: n draws, no retries). */
function pickIndexes(sample: Sample, total: number): Set<number> {
  const n = Math.min(total, 'count' in sample ? sample.count : Math.ceil(sample.fraction * total));
  const picked = new Set<number>();
  for (let j = total - n; j < total; j++) {
    const t = Math.floor(Math.random() * (j + 1));
    picked.add(picked.has(t) ? j : t);
  }
  return picked;
}

/** The report as printed: per algorithm, per master key, every failure, then the verdict. */
export function verifyReportLines(r: VerifyReport, token: string): string[] {
  const tallyLine = (t: Tally) => `${t.passed} passed, ${t.failed} failed`;
  const checked = r.passed + r.failed;
  const lines = [`keys verify: token ${token}; ${r.sampled ? `a random sample of ${r.total} keys` : `${r.total} keys`}${r.after === undefined ? '' : ` after ${r.after}`}`];
  for (const [name, t] of Object.entries(r.byAlgorithm).sort()) lines.push(`  algorithm ${name}: ${tallyLine(t)}`);
  for (const [name, t] of Object.entries(r.byMasterKey).sort()) lines.push(`  master key "${name}": ${tallyLine(t)}`);
  for (const f of r.failures) lines.push(`  FAILED ${f.keyId}: ${f.code}: ${f.reason}`);
  const resume = r.sampled ? 'run it again for a new sample' : r.lastKeyId === undefined ? 'run it again' : `resume with: hsm-driver keys verify --after ${r.lastKeyId} (and the same options)`;
  if (r.brokenBy) lines.push(`keys verify: stopped: the HSM or database failed (${r.brokenBy}); ${resume}`);
  else if (r.stopped) lines.push(`keys verify: stopped after ${checked} of ${r.total} keys; ${resume}`);
  const whole = r.failed === 0 && !r.stopped && !r.brokenBy;
  const verdict = checked === 0 ? ' (there were none to check)' : whole ? '; every key unwrapped, signed and verified' : '';
  lines.push(`keys verify: ${checked} keys checked: ${r.passed} passed, ${r.failed} failed${verdict}`);
  return lines;
}
