// `node scripts/bench/profile.ts [--jobs N] [--sessions S] [--algorithm A]`: where the driver's
// time goes. Runs the bench's system (token, job server, `hsm-driver run`) with the driver under
// V8's sampling profiler, sends sign jobs, and prints how busy the driver's main thread was and
// the functions that took that time (self time). The token's work on the libuv pool is not in
// this profile; the bench's CPU-per-job figures count it.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { driverEnv, runChecked, signInput } from './e2e.ts';
import { cpuMs, devSetup, startDriver, startJobServer, stop } from './system.ts';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '3000' }, sessions: { type: 'string', default: '1' }, algorithm: { type: 'string', default: 'ecdsa-secp256k1' } } });
const jobs = Number(values.jobs);
const sessions = Number(values.sessions);
const algorithm = values.algorithm!;

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

const work = mkdtempSync(join(tmpdir(), 'hsm-profile-'));
const profDir = join(work, 'prof');
const { token, pki } = devSetup(join(work, 'softhsm'));
const server = await startJobServer(pki);
const env = { ...driverEnv({ token, pki, workDir: work }, { SQLITE_PATH: join(work, 'keys.db') }), NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` };
const driver = await startDriver(server, pki, env, ['--sessions', String(sessions), '--concurrency', String(4 * sessions)]);
try {
  const keys = 16;
  await runChecked(server.adminUrl, Array.from({ length: keys }, (_, i) => ({ kind: 'keygen', input: { keyId: `p${i}`, algorithm } })));
  await runChecked(server.adminUrl, Array.from({ length: 300 }, (_, i) => ({ kind: 'sign', input: signInput(algorithm, `p${i % keys}`) })));
  const cpuBefore = cpuMs(driver.proc.pid!);
  const started = performance.now();
  await runChecked(server.adminUrl, Array.from({ length: jobs }, (_, i) => ({ kind: 'sign', input: signInput(algorithm, `p${i % keys}`) })));
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuMs(driver.proc.pid!) - cpuBefore;
  console.log(`${jobs} ${algorithm} signs at --sessions ${sessions}: ${Math.round(jobs / seconds)} jobs/s; driver process CPU ${(cpu / jobs).toFixed(2)} ms per job (all threads, SoftHSM included)`);
} finally {
  await stop(driver);
  await stop(server);
}

const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error('the driver wrote no profile');
const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parentOf = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id);
/** A frame's name; native code without one is named after the nearest caller that has one. */
function nameOf(id: number): string {
  const f = byId.get(id)!.callFrame;
  if (f.functionName.startsWith('(')) return f.functionName;
  if (f.functionName && f.url) return `${f.functionName} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
  for (let up = parentOf.get(id); up !== undefined; up = parentOf.get(up)) {
    const caller = byId.get(up)!.callFrame;
    if (caller.functionName && caller.url) return `${f.functionName || 'native code'} in ${caller.functionName} ${caller.url.split('/').slice(-2).join('/')}:${caller.lineNumber + 1}`;
  }
  return f.functionName || '(anonymous)';
}
const self = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  total += dt;
  const key = nameOf(id);
  self.set(key, (self.get(key) ?? 0) + dt);
});
const idle = self.get('(idle)') ?? 0;
console.log(`main thread busy ${((100 * (total - idle)) / total).toFixed(1)} % of ${(total / 1e6).toFixed(1)} s profiled (the whole run, set-up included)`);
const ranked = [...self.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, 25);
for (const [name, us] of ranked) console.log(`${((100 * us) / total).toFixed(1).padStart(5)} %  ${name}`);
rmSync(work, { recursive: true, force: true });
