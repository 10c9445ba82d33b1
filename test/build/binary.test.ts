// The single binary (build/sea.mjs) on a bare host: alone in an empty dir, no Node, no
// node_modules; the addon cache's safety rules; and byte-identical rebuilds.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBinary, builtBinary, installAlone, runBinary } from './sea.js';

const root = join(import.meta.dirname, '..', '..');
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** The SoftHSM token global-setup made. */
function tokenEnv(): Record<string, string> {
  const names = ['SOFTHSM2_CONF', 'PKCS11_MODULE', 'TOKEN_LABEL', 'MASTER_KEY_LABEL', 'USER_PIN_FILE'];
  return Object.fromEntries(names.map((n) => [n, process.env[n] ?? '']));
}

describe('hsm-driver-linux-x64', () => {
  let dir = '';
  let built = '';
  let host = '';
  let bin = '';
  const run = (args: string[], env: Record<string, string> = {}) => runBinary(bin, args, host, { ...tokenEnv(), ...env });
  const cache = () => join(host, '.cache', 'hsm-driver');
  const cachedAddon = () => {
    const names = readdirSync(cache()).filter((n) => n.endsWith('.node'));
    expect(names).toHaveLength(1);
    return join(cache(), names[0]!);
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hsm-binary-'));
    built = builtBinary();
    host = join(dir, 'host');
    bin = installAlone(built, host);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints its version from an empty dir with a bare environment, on its own Node', () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const pkcs11js = JSON.parse(readFileSync(join(root, 'node_modules/pkcs11js/package.json'), 'utf8')).version;
    const res = runBinary(bin, ['version'], host);
    expect(res).toMatchObject({ status: 0, stderr: '' });
    const lines = res.stdout.split('\n');
    expect(lines[0]).toBe(`hsm-driver ${version}`);
    const fields = Object.fromEntries(lines.slice(1, -1).map((l) => l.split(': ', 2) as [string, string]));
    expect(fields).toMatchObject({ node: 'v24.21.0', pkcs11js, target: 'linux-x64' });
    expect(fields.commit).toMatch(/^([0-9a-f]{40}(-dirty)?|unknown)$/);
    expect(fields.sqlite).toMatch(/^3\.\d+\.\d+$/);
    expect(fields.addon).toBe(cachedAddon());
    // Nothing on PATH at all: it needs no node, nor anything else, from the host.
    expect(runBinary(bin, ['version'], host, { PATH: join(dir, 'empty-path') }).status).toBe(0);
  });

  it('keeps the addon in a 0700 cache dir, 0600, named by its SHA-256', () => {
    run(['version']);
    expect(statSync(cache()).mode & 0o777).toBe(0o700);
    const addon = cachedAddon();
    expect(statSync(addon).mode & 0o777).toBe(0o600);
    expect(addon).toContain(sha256(addon));
    expect(readdirSync(cache()).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('lists the SoftHSM token with hsm list', () => {
    const res = run(['hsm', 'list']);
    expect(res).toMatchObject({ status: 0, stderr: '' });
    expect(res.stdout).toContain(`token "${process.env.TOKEN_LABEL}"`);
  });

  it('answers a one-shot health job with a SQLite store in its dir', () => {
    const res = run(['health', '--input', '{}', '--sqlite-path', join(host, 'keys.db')]);
    expect(res.status).toBe(0);
    const { output } = JSON.parse(res.stdout);
    expect(output).toMatchObject({ ok: true, hsm: { ok: true }, database: { ok: true, kind: 'sqlite' } });
    expect(existsSync(join(host, 'keys.db'))).toBe(true);
  });

  it('refuses a group-writable cache dir with one line and a non-zero exit', () => {
    run(['version']);
    chmodSync(cache(), 0o770);
    try {
      const res = run(['hsm', 'list']);
      expect(res.status).not.toBe(0);
      expect(res.stdout).toBe('');
      expect(res.stderr).toMatch(/^hsm-driver: refusing the addon cache .*hsm-driver: it is writable by group or others \(mode 0770\); run: chmod 700 .*\n$/);
    } finally {
      chmodSync(cache(), 0o700);
    }
  });

  it('replaces a tampered cached addon instead of loading it', () => {
    run(['version']);
    const addon = cachedAddon();
    const want = sha256(addon);
    writeFileSync(addon, 'not the addon');
    expect(run(['hsm', 'list']).status).toBe(0);
    expect(sha256(addon)).toBe(want);

    // A link planted under the name is replaced too, and what it points at is left alone.
    const decoy = join(dir, 'decoy.node');
    writeFileSync(decoy, 'decoy');
    rmSync(addon);
    symlinkSync(decoy, addon);
    expect(run(['hsm', 'list']).status).toBe(0);
    expect(sha256(addon)).toBe(want);
    expect(statSync(addon).isFile()).toBe(true);
    expect(readFileSync(decoy, 'utf8')).toBe('decoy');
  });

  it('builds byte-identical binaries from one commit', { timeout: 180_000 }, () => {
    const again = buildBinary(join(dir, 'b'));
    const [a, b] = [sha256(built), sha256(again)];
    console.info(`two builds: ${a} ${b} (${statSync(built).size} bytes)`);
    // Sources edited or committed during the run change the bundle too: say which commit each saw.
    const commits = [built, again].map((file) => /^commit: .*$/m.exec(runBinary(file, ['version'], host).stdout)?.[0]);
    expect(b, `the builds differ; ${commits.join(' vs ')}`).toBe(a);
  });
});
