// `hsm-driver audit verify` and `audit export`: read the audit trail from the database;
// verify checks every chain and seal (inside the HSM), export writes JSON lines.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Logger } from 'pino';
import { auditJson } from '../audit/record.js';
import { verifyAudit } from '../audit/verify.js';
import { resolveHsmConfig, resolveStoreOptions, type Settings } from '../config.js';
import { ConfigError } from '../errors.js';
import { Hsm } from '../hsm/hsm.js';
import { openStore } from '../store/index.js';

export async function auditVerify(settings: Settings, env: NodeJS.ProcessEnv, log: Logger): Promise<{ lines: string[]; ok: boolean }> {
  const hsm = await Hsm.open(resolveHsmConfig(settings, env), log);
  try {
    const store = await openStore(resolveStoreOptions(settings, env));
    try {
      await hsm.checkIntegrityKey();
      const reports = await verifyAudit(store.audit, hsm);
      const lines = reports.map((r) =>
        r.firstBad
          ? `chain ${r.chain}: BAD record seq ${r.firstBad.seq} (job ${r.firstBad.jobId}): ${r.firstBad.reason}; ${r.good} good before it`
          : `chain ${r.chain}: ${r.good} records good; head seq ${r.head?.seq ?? 0} hash ${r.head?.hash ?? '-'}`,
      );
      const bad = reports.filter((r) => r.firstBad).length;
      const total = reports.reduce((n, r) => n + r.good, 0);
      lines.push(bad === 0 ? `audit verify: ${total} records in ${reports.length} chains, every chain and seal good` : `audit verify: ${bad} of ${reports.length} chains have a bad record`);
      return { lines, ok: bad === 0 };
    } finally {
      await store.close();
    }
  } finally {
    await hsm.close();
  }
}

export interface ExportOptions {
  since?: string;
  keyId?: string;
  /** A file to write; standard output when absent. */
  out?: string;
}

/** Writes the matching records as JSON lines, chain by chain in seq order; returns how many. */
export async function auditExport(settings: Settings, env: NodeJS.ProcessEnv, o: ExportOptions, stdout: (line: string) => void): Promise<number> {
  const since = o.since === undefined ? undefined : new Date(o.since);
  if (since && Number.isNaN(since.getTime())) throw new ConfigError(`--since must be a date or time such as 2026-11-01 or 2026-11-01T12:00:00Z, got "${o.since}"`);
  const store = await openStore(resolveStoreOptions(settings, env));
  let fd: number | undefined;
  try {
    if (o.out) fd = openSync(o.out, 'wx', 0o600);
  } catch (err) {
    await store.close();
    throw new ConfigError(`cannot create ${o.out} (${(err as NodeJS.ErrnoException).code}); export never overwrites a file`);
  }
  const write = fd === undefined ? stdout : (line: string) => writeSync(fd, `${line}\n`);
  let count = 0;
  try {
    for (const chain of await store.audit.chains()) {
      for (let afterSeq = 0; ; ) {
        const page = await store.audit.read({ chain, afterSeq, limit: 1000, since, keyId: o.keyId });
        for (const r of page) write(JSON.stringify(auditJson(r)));
        count += page.length;
        if (page.length === 0) break;
        afterSeq = page.at(-1)!.seq;
      }
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
    await store.close();
  }
  return count;
}
