// Builds the single binary for the tests in this folder, outside the repo (node build/sea.mjs
// --outdir), and runs it the way a bare host would: alone in a dir, with a minimal environment.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

export const BINARY = 'hsm-driver-linux-x64';

/** Runs build/sea.mjs for one target into `outdir` and returns the binary's path; the build's output on failure. */
export function buildBinary(outdir: string, target: 'linux-x64' | 'win-x64' = 'linux-x64'): string {
  try {
    execFileSync(process.execPath, [join(root, 'build/sea.mjs'), '--outdir', outdir, '--target', target], { stdio: 'pipe', encoding: 'utf8' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`build/sea.mjs failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  return join(outdir, target === 'win-x64' ? 'hsm-driver-win-x64.exe' : BINARY);
}

/** The binary global-setup built for this run. */
export function builtBinary(): string {
  const path = process.env.HSM_DRIVER_BINARY;
  if (!path) throw new Error('HSM_DRIVER_BINARY is not set: run the tests through vitest (global-setup builds it)');
  return path;
}

/** Copies the binary alone into `dir` (created), as a host with no Node and no node_modules gets it. */
export function installAlone(binary: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, BINARY);
  copyFileSync(binary, path);
  return path;
}

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs the binary in `cwd` with only PATH=/usr/bin:/bin, HOME and `env` set. */
export function runBinary(binary: string, args: string[], cwd: string, env: Record<string, string> = {}): Run {
  const res = spawnSync(binary, args, { cwd, env: { PATH: '/usr/bin:/bin', HOME: cwd, ...env }, encoding: 'utf8', timeout: 60_000 });
  if (res.status === null) throw new Error(`${binary} ${args.join(' ')} did not exit (${res.signal ?? res.error?.message})\n${res.stderr}`);
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}
