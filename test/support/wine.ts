// Runs the Windows exe under Wine (Debian wine64 8.0, in the prefix scripts/wine/prefix.sh
// prepares: ../shared/FINDINGS.md explains why Node 24 needs it). stdout and stderr go through
// files: Wine gives pipes EBADF. Paths handed to the exe are Z:\ paths of the Linux files.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const WINE = '/usr/lib/wine/wine64';
export const WINESERVER = '/usr/lib/wine/wineserver';
const root = join(import.meta.dirname, '..', '..');

/** Why the Wine tests cannot run here, or undefined when they can. */
export function wineMissing(): string | undefined {
  if (!existsSync(WINE)) return `${WINE} is not installed (scripts/install-deps.sh installs wine64)`;
  if (!process.env.HSM_DRIVER_WIN_EXE || !existsSync(process.env.HSM_DRIVER_WIN_EXE)) return 'global-setup built no Windows exe';
  return undefined;
}

/** The exe global-setup built, its prepared prefix, and the PKCS#11 bridge DLL to SoftHSM. */
export function windowsBuild(): { exe: string; prefix: string; bridge: string } {
  return { exe: process.env.HSM_DRIVER_WIN_EXE!, prefix: process.env.HSM_DRIVER_WINE_PREFIX!, bridge: process.env.HSM_DRIVER_PKCS11_BRIDGE! };
}

/** A Linux path as the exe sees it. */
export const winPath = (path: string) => `Z:${path.replaceAll('/', '\\')}`;

/** Makes a prepared prefix of its own (for tests that need their own wineserver); ~15 s. */
export function newPrefix(dir: string): string {
  return spawnSync('bash', [join(root, 'scripts/wine/prefix.sh'), dir], { encoding: 'utf8' }).stdout.trim();
}

export interface WineRun {
  status: number;
  stdout: string;
  stderr: string;
}

export interface WineOptions {
  prefix: string;
  cwd: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

export interface WineProcess {
  /** The exit code once it has exited (CRLF made LF in the output). */
  exited: Promise<WineRun>;
  /** What it has written to stderr so far. */
  stderr(): string;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts `exe args…` under Wine; `exec` makes the Wine process itself our child, so kill reaches it. */
export function startUnderWine(exe: string, args: string[], o: WineOptions): WineProcess {
  const out = mkdtempSync(join(tmpdir(), 'wine-run-'));
  const env: Record<string, string | undefined> = { PATH: '/usr/bin:/bin', HOME: process.env.HOME, WINEPREFIX: o.prefix, WINEDEBUG: '-all', ...o.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  const read = (name: string) => (existsSync(join(out, name)) ? readFileSync(join(out, name), 'utf8').replace(/\r\n/g, '\n') : '');
  const child = spawn('sh', ['-c', 'exec "$0" "$@" >"$OUT/stdout" 2>"$OUT/stderr"', WINE, exe, ...args], {
    cwd: o.cwd,
    env: { ...(env as Record<string, string>), OUT: out },
    stdio: 'ignore',
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
  const exited = new Promise<WineRun>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const result = { status: code ?? -1, stdout: read('stdout'), stderr: read('stderr') };
      rmSync(out, { recursive: true, force: true });
      if (signal && signal !== 'SIGKILL') reject(new Error(`${exe} ${args.join(' ')} killed by ${signal}\n${result.stderr}`));
      else resolve(signal ? { ...result, status: -1 } : result);
    });
  });
  return { exited, stderr: () => read('stderr'), kill: (signal = 'SIGKILL') => child.kill(signal) };
}

/** Runs `exe args…` under Wine and resolves with its exit code and output. */
export function runUnderWine(exe: string, args: string[], o: WineOptions): Promise<WineRun> {
  return startUnderWine(exe, args, o).exited;
}

/** Keeps a wineserver alive for `prefix` (services die with it); returns a function that ends it. */
export function persistentWineserver(prefix: string): () => void {
  const env = { ...process.env, WINEPREFIX: prefix };
  spawnSync(WINESERVER, ['-k'], { env });
  spawnSync(WINESERVER, ['-w'], { env });
  // It forks into the background: with our pipes it would hold spawnSync open for ever.
  spawnSync(WINESERVER, ['-p'], { env, stdio: 'ignore' });
  return () => {
    spawnSync(WINESERVER, ['-k'], { env });
    spawnSync(WINESERVER, ['-w'], { env, timeout: 10_000 });
  };
}
