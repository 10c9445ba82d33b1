// Each freshly built binary runs its own `version` the way a bare host would (an empty dir,
// nothing inherited, under another name) before the build keeps it. The Windows exe runs under
// Wine when Wine is installed, in the prefix scripts/wine/prefix.sh prepares; the build fails
// loudly if it does not start there.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './bundler.mjs';
import { CACHE, NODE_VERSION } from './node-dist.mjs';

/** Checks the `version` output of a binary of `target` whose addon should sit under `cacheRoot`. */
function checkVersion(out, target, cacheRoot, binary) {
  const addon = /^addon: (.*)$/m.exec(out)?.[1] ?? '';
  if (!out.startsWith('hsm-driver ') || !out.includes(`\nnode: v${NODE_VERSION}\n`) || !out.includes(`\ntarget: ${target}\n`) || !addon.startsWith(cacheRoot)) {
    throw new Error(`${binary} version printed:\n${out}`);
  }
  return out;
}

export function linuxSelfCheck(binary, work) {
  const home = join(work, 'home');
  mkdirSync(home);
  const out = execFileSync(binary, ['version'], { cwd: home, env: { PATH: '/usr/bin:/bin', HOME: home }, encoding: 'utf8' });
  return checkVersion(out, 'linux-x64', join(home, '.cache'), binary);
}

export const WINE = '/usr/lib/wine/wine64';

/** The prepared Wine prefix (made once under build/.cache), or undefined when Wine is not installed. */
export function winePrefix() {
  if (!existsSync(WINE)) return undefined;
  return execFileSync('bash', [join(root, 'scripts/wine/prefix.sh'), join(CACHE, 'wine-prefix')], { encoding: 'utf8' }).trim();
}

export function wineSelfCheck(binary, work) {
  const prefix = winePrefix();
  if (!prefix) {
    console.warn(`build: Wine is not installed, so ${binary} was not run (scripts/install-deps.sh installs it)`);
    return `(not run: no Wine)\n`;
  }
  const dir = join(work, 'wine-check');
  mkdirSync(dir);
  const renamed = join(dir, 'renamed-driver.exe'); // the addon must not depend on the exe's name
  copyFileSync(binary, renamed);
  // Wine gives pipes EBADF: stdout and stderr go to files.
  const out = join(dir, 'out.txt');
  const err = join(dir, 'err.txt');
  const res = spawnSync('sh', ['-c', `"$0" "$1" version >"$2" 2>"$3"`, WINE, renamed, out, err], {
    cwd: dir,
    env: { PATH: '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', WINEPREFIX: prefix, WINEDEBUG: '-all' },
    timeout: 120_000,
  });
  const stdout = existsSync(out) ? readFileSync(out, 'utf8').replace(/\r\n/g, '\n') : '';
  const stderr = existsSync(err) ? readFileSync(err, 'utf8') : '';
  if (res.status !== 0) throw new Error(`${binary} did not start under Wine (exit ${res.status ?? res.signal}):\n${stdout}${stderr}`);
  return checkVersion(stdout, 'win32-x64', 'C:\\users\\', binary);
}
