// docs/runbook.md is executable: every command block starts with a marker. `# runbook: see FILE…`
// blocks name test files that run each hsm-driver command of the block; `# runbook: run` blocks run
// here, in order, in one bash shell under `set -euo pipefail`, in a sandbox: a fresh HOME, the
// bundle as `hsm-driver` on the PATH, SoftHSM, three PostgreSQL databases, free ports for the
// reference job server. A ```text block right after a command block lists lines its output must
// hold, in order (`…` is any text, runs of spaces count as one).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { usePostgresDatabase } from '../support/postgres.js';

const root = join(import.meta.dirname, '..', '..');
const RUNBOOK = join(root, 'docs', 'runbook.md');

/** The CLI's commands and their actions (runtime/cli/cli.ts), written out as the runbook uses them. */
const COMMANDS = ['run', 'keygen', 'sign', 'health', 'hsm', 'keys', 'audit', 'service', 'config', 'version'];
const ACTIONS: Record<string, string[]> = {
  hsm: ['list', 'test'],
  keys: ['seal', 'rewrap', 'export', 'import', 'verify'],
  audit: ['verify', 'export'],
  service: ['install', 'start', 'stop', 'status', 'uninstall', 'run'],
  config: ['check', 'init'],
};
const COMMAND_LANGS = new Set(['sh', 'bash', 'shell', 'console', 'powershell', 'ps1', 'pwsh']);
/** What the run blocks call besides hsm-driver and bash's builtins. */
const TOOLS = ['softhsm2-util', 'pkcs11-tool', 'openssl', 'jq', 'curl', 'pg_dump', 'pg_restore', 'systemd-analyze', 'timeout', 'tar', 'sha256sum'];

type Marker = { kind: 'run' } | { kind: 'see'; files: string[] };

export interface Block {
  lang: string;
  body: string;
  /** 1-based line of the opening fence. */
  line: number;
  marker?: Marker;
  /** The lines of a ```text block right after this one. */
  expected?: string[];
}

/** The fenced blocks of a Markdown text, each command block with its marker and expected output. */
export function parseRunbook(text: string): Block[] {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let previousEnd = -2;
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
    const block: Block = { lang: open[1]!, body: body.join('\n'), line: start + 1 };
    const marker = /^#\s*runbook:\s*(run|see)\b\s*(.*)$/.exec(body[0] ?? '');
    if (marker) block.marker = marker[1] === 'run' ? { kind: 'run' } : { kind: 'see', files: marker[2]!.split(/\s+/).filter(Boolean) };
    const previous = blocks.at(-1);
    const adjacent = previous !== undefined && lines.slice(previousEnd + 1, start).every((l) => l.trim() === '');
    if (block.lang === 'text' && adjacent && COMMAND_LANGS.has(previous.lang)) previous.expected = body.filter((l) => l.trim() !== '');
    blocks.push(block);
    previousEnd = i;
  }
  return blocks;
}

/** The hsm-driver commands a block calls, as `keys rewrap` or `version`. */
export function subcommands(body: string): string[] {
  const found = new Set<string>();
  for (const raw of body.split('\n')) {
    const line = raw.replace(/(^|\s)#.*$/, '');
    for (const m of line.matchAll(/(?:^|[\s;&|(`'"])(?:\.\\)?hsm-driver(?:\.exe|-linux-x64|-win-x64\.exe)?\s+([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?/g)) {
      const [, command, action] = m;
      if (!COMMANDS.includes(command!)) continue;
      found.add(action !== undefined && ACTIONS[command!]?.includes(action) ? `${command} ${action}` : command!);
    }
  }
  return [...found];
}

/** A test file runs `sub` when it writes it out (`service install`) or passes its words as strings ('service', 'install'). */
export function mentions(source: string, sub: string): boolean {
  const words = sub.split(' ');
  if (source.includes(`hsm-driver ${sub}`) || (words.length > 1 && source.includes(sub))) return true;
  return words.every((w) => new RegExp(`['"\`]${w}['"\`]`).test(source));
}

const normalize = (s: string) => s.replace(/\s+/g, ' ').trim();
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The first expected line not found (in order) in the output, or undefined when all are. */
export function missingLine(output: string, expected: string[]): string | undefined {
  const lines = output.split('\n').map(normalize);
  let at = 0;
  for (const want of expected) {
    const pattern = new RegExp(`^${normalize(want).split('…').map(escapeRegExp).join('.*')}$`);
    const found = lines.findIndex((l, i) => i >= at && pattern.test(l));
    if (found < 0) return want;
    at = found + 1;
  }
  return undefined;
}

/**
 * One bash, in a process group of its own (so that what the blocks leave running can be stopped),
 * fed one block at a time from a file with stdin from /dev/null and stderr joined to stdout.
 */
class BlockShell {
  private readonly proc: ChildProcess;
  private output = '';
  private exited: number | null | undefined;
  private wake: () => void = () => {};
  private count = 0;

  constructor(
    private readonly dir: string,
    cwd: string,
    env: Record<string, string>,
  ) {
    this.proc = spawn('bash', ['--noprofile', '--norc'], { cwd, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    const take = (d: Buffer) => ((this.output += d.toString()), this.wake());
    this.proc.stdout!.on('data', take);
    this.proc.stderr!.on('data', take);
    this.proc.on('exit', (code) => ((this.exited = code), this.wake()));
    this.proc.stdin!.write('set -euo pipefail\n');
  }

  async run(script: string, timeoutMs: number): Promise<string> {
    const n = ++this.count;
    const file = join(this.dir, `block-${n}.sh`);
    writeFileSync(file, `${script}\n`);
    const marker = `--- runbook block ${n} done ---`;
    this.output = '';
    this.proc.stdin!.write(`. ${file} </dev/null 2>&1\nprintf '%s\\n' '${marker}'\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.output.indexOf(`${marker}\n`);
      if (at >= 0) return this.output.slice(0, at);
      if (this.exited !== undefined) throw new Error(`the block failed (the shell exited with ${this.exited}); its output:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`the block did not finish in ${timeoutMs} ms; its output:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 500);
        this.wake = () => (clearTimeout(timer), resolve());
      });
    }
  }

  /** Ends the shell and everything the blocks started in its process group. */
  stop(): void {
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      try {
        process.kill(-this.proc.pid!, signal);
      } catch {
        return; // the group is gone
      }
      spawnSync('sleep', ['0.5']);
    }
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

const blocks = parseRunbook(readFileSync(RUNBOOK, 'utf8'));
const commandBlocks = blocks.filter((b) => COMMAND_LANGS.has(b.lang));
const runBlocks = commandBlocks.filter((b) => b.marker?.kind === 'run');
const firstCommand = (b: Block) => b.body.split('\n').find((l) => l.trim() !== '' && !l.trim().startsWith('#'))?.trim().slice(0, 60) ?? '';

describe('docs/runbook.md', () => {
  test('is linked from the README', () => {
    expect(readFileSync(join(root, 'README.md'), 'utf8')).toContain('(docs/runbook.md)');
  });

  test('every command block starts with a runbook marker', () => {
    expect(commandBlocks.length).toBeGreaterThan(20);
    expect(commandBlocks.filter((b) => !b.marker).map((b) => `line ${b.line}: ${firstCommand(b)}`)).toEqual([]);
    // Only bash runs here: a PowerShell block can only point at the Windows tests.
    expect(runBlocks.filter((b) => b.lang !== 'sh' && b.lang !== 'bash').map((b) => `line ${b.line}`)).toEqual([]);
  });

  test('each "see" block names existing test files that run every hsm-driver command in it', () => {
    const problems: string[] = [];
    for (const block of commandBlocks) {
      if (block.marker?.kind !== 'see') continue;
      if (block.marker.files.length === 0) problems.push(`line ${block.line}: names no test file`);
      const sources = block.marker.files.map((file) => {
        const path = join(root, file);
        if (!existsSync(path)) problems.push(`line ${block.line}: ${file} does not exist`);
        return existsSync(path) ? readFileSync(path, 'utf8') : '';
      });
      for (const sub of subcommands(block.body)) {
        if (!sources.some((s) => mentions(s, sub))) problems.push(`line ${block.line}: no named test runs "hsm-driver ${sub}"`);
      }
    }
    expect(problems).toEqual([]);
  });

  test('the parser finds what the checks rely on', () => {
    expect(subcommands('hsm-driver keys rewrap --dry-run\n.\\hsm-driver.exe service install `\n$EDITOR /etc/hsm-driver/hsm-driver.env\nhsm-driver version # hsm-driver config check')).toEqual([
      'keys rewrap',
      'service install',
      'version',
    ]);
    expect(mentions("run(['service', ...args]); service(['status'])", 'service status')).toBe(true);
    expect(mentions('// the version of it', 'version')).toBe(false);
    expect(missingLine('a  b\nkeys verify: 3 keys checked\nz', ['keys verify: … checked', 'z'])).toBeUndefined();
    expect(missingLine('z\nkeys verify: 3 keys checked', ['keys verify: … checked', 'z'])).toBe('z');
  });
});

describe('the runbook\'s "run" blocks, in order, in one shell', () => {
  const pgShared = usePostgresDatabase();
  const pgDr = usePostgresDatabase();
  const pgRestore = usePostgresDatabase();
  let dir = '';
  let shell: BlockShell | undefined;
  let failedAt: number | undefined;

  beforeAll(async () => {
    const bundle = process.env.HSM_DRIVER_BUNDLE;
    if (!bundle || !existsSync(bundle)) throw new Error('HSM_DRIVER_BUNDLE is not built: run through vitest (test/support/global-setup.ts)');
    const systemPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
    const missing = TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { env: { PATH: systemPath } }).status !== 0);
    if (missing.length > 0) throw new Error(`the runbook's commands need ${missing.join(', ')}; install them (scripts/install-deps.sh installs jq and curl)`);

    dir = mkdtempSync(join(tmpdir(), 'hsm-runbook-'));
    const home = join(dir, 'home');
    const checkout = join(dir, 'checkout'); // what the reader's cwd holds: the repository's scripts/
    const bin = join(dir, 'bin');
    for (const d of [home, checkout, bin]) mkdirSync(d, { recursive: true, mode: 0o700 });
    symlinkSync(join(root, 'scripts'), join(checkout, 'scripts'));
    writeFileSync(join(bin, 'hsm-driver'), `#!/bin/sh\nexec '${process.execPath}' '${bundle}' "$@"\n`);
    chmodSync(join(bin, 'hsm-driver'), 0o755);
    const [api, admin, metrics] = [await freePort(), await freePort(), await freePort()];
    // Only what a reader's shell would hold: none of the test tokens' variables.
    shell = new BlockShell(dir, checkout, {
      PATH: `${bin}:${dirname(process.execPath)}:${systemPath}`,
      HOME: home,
      LANG: 'C.UTF-8',
      USER: 'root',
      PG_URL: pgShared(),
      DR_PG_URL: pgDr(),
      RESTORE_PG_URL: pgRestore(),
      API_PORT: String(api),
      ADMIN_PORT: String(admin),
      METRICS_PORT: String(metrics),
    });
  });

  afterAll(() => {
    shell?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('there are run blocks, each with its expected output', () => {
    expect(runBlocks.length).toBeGreaterThan(20);
    expect(runBlocks.filter((b) => b.expected === undefined).map((b) => `line ${b.line}: ${firstCommand(b)}`)).toEqual([
      expect.stringContaining('kill -TERM $job_server'),
    ]);
  });

  runBlocks.forEach((block, i) => {
    test(`block ${i + 1}, line ${block.line}: ${firstCommand(block)}`, { timeout: 150_000 }, async (ctx) => {
      if (failedAt !== undefined) ctx.skip(`block ${failedAt} failed`);
      try {
        const output = await shell!.run(block.body, 120_000);
        if (block.expected) expect(missingLine(output, block.expected), `expected this line (in order) in the output:\n${output}`).toBeUndefined();
      } catch (err) {
        failedAt = i + 1;
        throw err;
      }
    });
  });
});
