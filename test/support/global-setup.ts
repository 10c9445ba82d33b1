// Runs once before all test files: makes SoftHSM2 dev tokens in a temp dir (a good master key,
// and one made without --private as plain pkcs11-tool does) and builds the bundle the CLI tests
// run (HSM_DRIVER_BUNDLE) and the single binary (HSM_DRIVER_BINARY). The env it sets reaches
// every test worker.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

/** Reads the `export NAME=value` lines dev-hsm.sh writes. */
export function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of readFileSync(path, 'utf8').matchAll(/^export (\w+)=(.*)$/gm)) out[m[1]!] = m[2]!;
  return out;
}

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'hsm-driver-test-'));
  const make = (sub: string, extra: Record<string, string>) =>
    execFileSync('bash', [join(root, 'scripts/dev-hsm.sh'), join(dir, sub)], { env: { ...process.env, ...extra }, encoding: 'utf8' }).trim();
  const good = make('good', { TOKEN_LABEL: 'hsm-driver-test' });
  const weak = make('weak', { TOKEN_LABEL: 'hsm-driver-weak', MASTER_KEY_CEREMONY: 'public' });
  Object.assign(process.env, readEnvFile(good));
  process.env.TEST_WEAK_TOKEN_ENV = weak;
  delete process.env.USER_PIN;
  // The tests run a bundle of their own, outside the repo: it must need nothing beside it.
  process.env.HSM_DRIVER_BUNDLE = join(dir, 'dist', 'hsm-driver.cjs');
  execFileSync(process.execPath, [join(root, 'build/bundle.mjs'), '--outdir', join(dir, 'dist')], { stdio: 'ignore' });
  // And the single binaries, built once for the build tests and the end-to-end runs against them.
  process.env.HSM_DRIVER_BINARY = join(dir, 'bin', 'hsm-driver-linux-x64');
  process.env.HSM_DRIVER_WIN_EXE = join(dir, 'bin', 'hsm-driver-win-x64.exe');
  execFileSync(process.execPath, [join(root, 'build/sea.mjs'), '--outdir', join(dir, 'bin')], { stdio: 'pipe' });
  // Where Wine is installed: the prefix the build checked the exe in, and the PKCS#11 bridge to SoftHSM.
  if (existsSync('/usr/lib/wine/wine64')) {
    process.env.HSM_DRIVER_WINE_PREFIX = execFileSync('bash', [join(root, 'scripts/wine/prefix.sh'), join(root, 'build/.cache/wine-prefix')], { encoding: 'utf8' }).trim();
    execFileSync('bash', [join(root, 'scripts/wine/build-bridge.sh'), join(dir, 'wine')], { stdio: 'pipe' });
    process.env.HSM_DRIVER_PKCS11_BRIDGE = join(dir, 'wine', 'pkcs11-bridge.dll');
  }
  return () => rmSync(dir, { recursive: true, force: true });
}
