// Reads a live process's memory for the security tests: every page it holds (resident or swapped,
// per /proc/PID/pagemap), whatever the mapping's protection, through /proc/PID/mem while the
// process is stopped: the bytes a core dump holds, read the way gdb's gcore reads them. gcore
// itself is not used: it also writes out V8's PROT_NONE reservations (WebAssembly guard regions,
// 8 GiB each), 19 GB and ~90 s per dump of a driver on this machine, where the pages in use are
// ~0.15 GB. And a V8 heap snapshot, through Node's --heapsnapshot-signal.
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ChunkScanner, type Pattern } from './secrets.js';

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
  /** Resident plus swapped, in kB. */
  pagesKb: number;
}

function mappings(pid: number): Mapping[] {
  const out: Mapping[] = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      out.push({ start: BigInt(`0x${head[1]}`), end: BigInt(`0x${head[2]}`), perms: head[3]!, path: head[4]!, pagesKb: 0 });
      continue;
    }
    const size = /^(Rss|Swap):\s+(\d+) kB/.exec(line);
    if (size && out.length > 0) out[out.length - 1]!.pagesKb += Number(size[2]);
  }
  return out;
}

export interface MemoryScan {
  /** Bytes read: the pages present in memory or swapped out, of every mapping. */
  bytesRead: number;
  /** Bytes of mappings that hold no page at all. */
  bytesSkipped: number;
  mappingsRead: number;
  /** Mappings that could not be read, with why (none expected). */
  unreadable: string[];
  hits: Map<string, number>;
  /** For each pattern found: the mappings it was found in (range, protection, path). */
  where: Map<string, string[]>;
}

const PAGE = 4096n;
const PRESENT = 1n << 63n;
const SWAPPED = 1n << 62n;

/**
 * Runs of pages of `m` that hold something (present, or swapped out), from /proc/PID/pagemap:
 * pages never touched read as zeros and need not be read at all (V8 maps a 512 MB code range
 * of which a few MB are used).
 */
function* pagesWithContent(pagemap: number, m: Mapping): Generator<[bigint, bigint]> {
  const pages = Number((m.end - m.start) / PAGE);
  const entries = Buffer.alloc(Math.min(pages, 1 << 16) * 8);
  let run: bigint | undefined;
  for (let first = 0; first < pages; first += entries.length / 8) {
    const count = Math.min(entries.length / 8, pages - first);
    const got = readSync(pagemap, entries, 0, count * 8, Number(((m.start / PAGE) + BigInt(first)) * 8n)) / 8;
    for (let i = 0; i < count; i++) {
      const page = m.start + BigInt(first + i) * PAGE;
      const used = i < got && (entries.readBigUInt64LE(i * 8) & (PRESENT | SWAPPED)) !== 0n;
      if (used && run === undefined) run = page;
      if (!used && run !== undefined) {
        yield [run, page];
        run = undefined;
      }
    }
  }
  if (run !== undefined) yield [run, m.end];
}

/**
 * Stops the process (SIGSTOP), scans each mapping with pages for `patterns`, and lets it go on
 * (SIGCONT). Needs ptrace rights over it: root, or its parent under Yama's default scope.
 */
export function scanProcessMemory(pid: number, patterns: readonly Pattern[]): MemoryScan {
  const scanner = new ChunkScanner(patterns);
  const result: MemoryScan = { bytesRead: 0, bytesSkipped: 0, mappingsRead: 0, unreadable: [], hits: scanner.hits, where: new Map() };
  const buf = Buffer.alloc(16 << 20);
  process.kill(pid, 'SIGSTOP');
  const mem = openSync(`/proc/${pid}/mem`, 'r');
  const pagemap = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    let lastEnd = -1n;
    for (const m of mappings(pid)) {
      // [vvar] and [vsyscall] are kernel pages that cannot be read this way and hold nothing of the process.
      if (m.pagesKb === 0 || m.path === '[vvar]' || m.path === '[vsyscall]') {
        result.bytesSkipped += Number(m.end - m.start);
        continue;
      }
      result.mappingsRead++;
      const before = new Map(scanner.hits);
      for (const [from, to] of pagesWithContent(pagemap, m)) {
        for (let at = from; at < to; ) {
          const want = Number(to - at < BigInt(buf.length) ? to - at : BigInt(buf.length));
          let n: number;
          try {
            n = readSync(mem, buf, 0, want, at);
          } catch (err) {
            result.unreadable.push(`${m.start.toString(16)}-${m.end.toString(16)} ${m.perms} ${m.path}: ${(err as NodeJS.ErrnoException).code}`);
            break;
          }
          if (n <= 0) break;
          scanner.push(buf.subarray(0, n), at === lastEnd);
          result.bytesRead += n;
          at += BigInt(n);
          lastEnd = at;
        }
      }
      for (const [name, count] of scanner.hits) {
        if (count === before.get(name)) continue;
        const where = result.where.get(name) ?? [];
        where.push(`${m.start.toString(16)}-${m.end.toString(16)} ${m.perms} ${m.path || '[anon]'} (${m.pagesKb} kB)`);
        result.where.set(name, where);
      }
    }
  } finally {
    closeSync(pagemap);
    closeSync(mem);
    process.kill(pid, 'SIGCONT');
  }
  return result;
}

/** NODE_OPTIONS that make a Node process (bundle or single binary) write a heap snapshot on SIGUSR2. */
export function heapSnapshotOptions(dir: string): string {
  return `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}`;
}

/** Every string of a V8 heap snapshot (the JSON's `strings` table: all string values on the heap). */
export async function takeHeapSnapshot(pid: number, dir: string, timeoutMs = 60_000): Promise<{ file: string; strings: string[] }> {
  const before = new Set(existsSync(dir) ? readdirSync(dir) : []);
  process.kill(pid, 'SIGUSR2');
  const end = Date.now() + timeoutMs;
  for (;;) {
    const file = readdirSync(dir).find((name) => name.endsWith('.heapsnapshot') && !before.has(name));
    if (file) {
      // Written by the process as it runs: complete once it parses.
      try {
        const snapshot = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { strings?: unknown };
        if (Array.isArray(snapshot.strings)) return { file: join(dir, file), strings: snapshot.strings as string[] };
      } catch {
        // not complete yet
      }
    }
    if (Date.now() > end) throw new Error(`no complete heap snapshot in ${dir} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
