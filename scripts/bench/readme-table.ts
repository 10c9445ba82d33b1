// Turns a `npm run bench` JSON file into the README's Markdown table: `node scripts/bench/readme-table.ts .dev/bench.json`.
import { readFileSync } from 'node:fs';

export interface Pair {
  algorithm: string;
  job: 'sign' | 'keygen';
  sessions: number;
  cache: boolean;
  concurrency: number;
  rawOpsPerSec: number;
  driverOpsPerSec: number;
  ratio: number;
  p50Ms: number;
  p99Ms: number;
  rawP50Ms: number;
  rawP99Ms: number;
  /** false for the runs with --audit-trail off (what the audit trail costs). */
  audit: boolean;
  driverCpuMsPerJob: number;
  serverCpuMsPerJob: number;
  /**
   * The best ratio the machine's CPUs allow: every core busy with the driver (SoftHSM inside it)
   * and the job server at their measured CPU per job, against the raw rate. Above it no code
   * change in the driver's scheduling helps; only less CPU per job does.
   */
  cpuCeilingRatio: number;
}

export interface Machine {
  cpus: number;
  model: string;
  memGiB: number;
  node: string;
  softhsm?: string;
}

const num = (x: number) => (x >= 100 ? Math.round(x).toString() : String(Math.round(x * 10) / 10));
const ms = (x: number) => String(Math.round(x * 100) / 100);

/** Pads every column so the table also reads well as plain text. */
function render(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.slice(1).map(line)];
}

export function markdownTable(report: { machine: Machine; date: string; pairs: Pair[] }): string {
  const m = report.machine;
  const softhsm = m.softhsm ? `, SoftHSM ${m.softhsm}` : '';
  const header = `Measured ${report.date.slice(0, 10)} on ${m.model} (${m.cpus} CPUs, ${m.memGiB} GiB), Node ${m.node}${softhsm}; driver p50/p99 are lease → answer at the job server; CPU ceiling: the ratio reachable with every core busy at the measured CPU per job.`;
  const rows = [['algorithm', 'job', 'sessions', 'cache', 'audit', 'raw ops/s', 'driver ops/s', 'ratio', 'CPU ms/job driver + server', 'CPU ceiling', 'p50/p99 ms', 'raw p50/p99 ms']];
  for (const p of report.pairs) {
    const cpu = p.driverCpuMsPerJob === undefined ? '-' : `${ms(p.driverCpuMsPerJob)} + ${ms(p.serverCpuMsPerJob)}`;
    const ceiling = p.cpuCeilingRatio === undefined ? '-' : p.cpuCeilingRatio.toFixed(2);
    rows.push([p.algorithm, p.job, String(p.sessions), p.cache ? 'yes' : 'no', p.audit === false ? 'off' : 'on', num(p.rawOpsPerSec), num(p.driverOpsPerSec), p.ratio.toFixed(2), cpu, ceiling, `${ms(p.p50Ms)} / ${ms(p.p99Ms)}`, `${ms(p.rawP50Ms)} / ${ms(p.rawP99Ms)}`]);
  }
  return [header, '', ...render(rows)].join('\n');
}

if (import.meta.main) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node scripts/bench/readme-table.ts FILE   (the JSON written by npm run bench)');
    process.exitCode = 2;
  } else {
    console.log(markdownTable(JSON.parse(readFileSync(file, 'utf8'))));
  }
}
