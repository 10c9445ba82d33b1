// `hsm-driver keys export --out FILE`: every key row as JSON lines (runtime/keys/backup-file.ts),
// public data and wrapped blobs only. Needs no HSM and no PIN. The rows go to a private
// temporary file first, so the header can carry the counts, master keys and mechanisms; FILE
// is then created (never overwritten, mode 0600) and written whole. A stopped or failed export
// leaves no FILE behind.
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ConfigError } from '../errors.js';
import type { WrappedKeyStore } from '../store/store.js';
import { Checksum, countRow, emptyCounts, FORMAT, FORMAT_VERSION, rowLine, type ExportHeader } from './backup-file.js';
import type { Progress } from './progress.js';
import { pagesOf } from './walk.js';

const PAGE = 500;

export interface ExportReport {
  /** Absent when stopped: nothing was written. */
  header?: ExportHeader;
  stopped: boolean;
}

export async function exportKeys(store: WrappedKeyStore, out: string, o: { stop?: AbortSignal; progress?: Progress } = {}): Promise<ExportReport> {
  if (existsSync(out)) throw new ConfigError(`${out} exists; keys export never overwrites a file`);
  const rowsFile = `${out}.rows-${randomBytes(6).toString('hex')}.tmp`;
  const rowsFd = create(rowsFile);
  let rowsOpen = true;
  let stopped = false;
  const counts = emptyCounts();
  const masterKeys = new Set<string>();
  const mechanisms = new Set<string>();
  try {
    o.progress?.start(await store.countKeys());
    try {
      for await (const page of pagesOf(store, { size: PAGE })) {
        if (o.stop?.aborted) {
          stopped = true;
          break;
        }
        writeSync(rowsFd, page.map((r) => `${rowLine(r)}\n`).join(''));
        for (const r of page) {
          countRow(counts, r);
          masterKeys.add(r.masterKeyLabel);
          if (r.wrapMechanism) mechanisms.add(r.wrapMechanism);
        }
        o.progress?.update(counts.rows);
      }
    } finally {
      o.progress?.stop();
    }
    closeSync(rowsFd);
    rowsOpen = false;
    if (stopped) return { stopped: true };
    const header: ExportHeader = {
      format: FORMAT,
      version: FORMAT_VERSION,
      exportedAt: new Date().toISOString(),
      store: store.kind,
      counts,
      masterKeys: [...masterKeys].sort(),
      mechanisms: [...mechanisms].sort(),
    };
    await publish(out, rowsFile, header);
    return { header, stopped: false };
  } finally {
    if (rowsOpen) closeSync(rowsFd);
    rmSync(rowsFile, { force: true });
  }
}

/** Creates `out` (never overwriting) and writes header, rows and trailer; removes it on failure. */
async function publish(out: string, rowsFile: string, header: ExportHeader): Promise<void> {
  const fd = create(out);
  const sum = new Checksum();
  const write = (line: string) => {
    sum.add(line);
    writeSync(fd, `${line}\n`);
  };
  try {
    write(JSON.stringify(header));
    for await (const line of createInterface({ input: createReadStream(rowsFile), crlfDelay: Infinity })) write(line);
    writeSync(fd, `${JSON.stringify({ rows: header.counts.rows, checksum: sum.hex() })}\n`);
    fsyncSync(fd);
    closeSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(out, { force: true });
    throw err;
  }
}

function create(path: string): number {
  try {
    return openSync(path, 'wx', 0o600);
  } catch (err) {
    throw new ConfigError(`cannot create ${path} (${(err as NodeJS.ErrnoException).code}); keys export never overwrites a file`);
  }
}

export function exportReportLines(r: ExportReport, out: string): string[] {
  if (!r.header) return [`keys export: stopped; nothing was written (${out} was not created): run it again`];
  const c = r.header.counts;
  const algorithms = Object.entries(c.byAlgorithm).sort().map(([a, n]) => `${a} ${n}`).join(', ');
  return [
    `keys export: ${c.rows} rows to ${out} (${c.sealed} sealed, ${c.unsealed} unsealed; ${c.wrapped} wrapped, ${c.resident} resident)`,
    `  algorithms: ${algorithms || 'none'}`,
    `  master keys: ${r.header.masterKeys.join(', ') || 'none'}; mechanisms: ${r.header.mechanisms.join(', ') || 'none'}`,
    ...(c.resident > 0 ? [`  note: ${c.resident} resident keys live as objects on the token that made them; the export holds only their rows`] : []),
  ];
}
