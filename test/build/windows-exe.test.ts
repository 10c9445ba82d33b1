// hsm-driver-win-x64.exe (build/sea.mjs) under Wine: alone in an empty folder under another
// name; what its own addons import; the addon cache's rules; byte-identical rebuilds. Wine runs
// the real exe, so this proves the build, Node 24's start-up, node:sqlite and our addons' loading
// on Wine's Win32; Wine derives file ACLs from Unix modes, so Windows' own ACL handling is not.
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { peImports } from '../../build/mingw.mjs';
import { newPrefix, runUnderWine, wineMissing, windowsBuild } from '../support/wine.js';
import { buildBinary } from './sea.js';

const root = join(import.meta.dirname, '..', '..');
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const missing = wineMissing();
/** Windows' own DLLs: the exe's addons may import nothing else. */
const SYSTEM_DLLS = ['ADVAPI32.DLL', 'KERNEL32.DLL', 'MSVCRT.DLL'];

describe.skipIf(missing)(`hsm-driver-win-x64.exe under Wine${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let prefix = '';
  let exe = '';
  /** The cache dir of this file's own prefix, seen from Linux. */
  const cache = () => join(prefix, 'drive_c/users', process.env.USER ?? 'root', 'AppData/Local/hsm-driver');
  const run = (args: string[]) => runUnderWine(exe, args, { prefix, cwd: dir });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hsm-winexe-'));
    // This file damages its addon cache on purpose: a prefix of its own keeps the other Wine tests out of it.
    prefix = newPrefix(join(dir, 'prefix'));
    exe = join(dir, 'signer.exe'); // the addons must not depend on the exe's name
    copyFileSync(windowsBuild().exe, exe);
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints its version alone in a folder under another name, on its own Node 24', async () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const res = await run(['version']);
    expect(res).toMatchObject({ status: 0, stderr: '' });
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`hsm-driver ${version}`);
    const fields = Object.fromEntries(lines.slice(1).map((l) => l.split(': ', 2) as [string, string]));
    expect(fields).toMatchObject({ node: 'v24.21.0', target: 'win32-x64' });
    expect(fields.sqlite).toMatch(/^3\.\d+\.\d+$/);
    expect(fields.addon).toMatch(/^C:\\users\\[^\\]+\\AppData\\Local\\hsm-driver\\pkcs11-[0-9a-f]{64}\.node$/);
  });

  it('prints its help with every command', async () => {
    const res = await run(['--help']);
    expect(res.status).toBe(0);
    for (const command of ['run', 'keygen', 'sign', 'health', 'hsm', 'service', 'version']) expect(res.stdout).toMatch(new RegExp(`hsm-driver ${command}\\b`));
  });

  it('extracts its addons under their SHA-256, importing only system DLLs', async () => {
    await run(['version']);
    const files = readdirSync(cache()).filter((n) => n.endsWith('.node'));
    expect(files.map((n) => n.replace(/-[0-9a-f]{64}\.node$/, ''))).toEqual(expect.arrayContaining(['pkcs11', 'win32']));
    for (const name of files) {
      const file = join(cache(), name);
      expect(name).toContain(sha256(file));
      expect(SYSTEM_DLLS).toEqual(expect.arrayContaining(peImports(file)));
    }
  });

  it('replaces a tampered cached addon instead of loading it', async () => {
    await run(['version']);
    const addon = join(cache(), readdirSync(cache()).find((n) => n.startsWith('pkcs11-'))!);
    const want = sha256(addon);
    writeFileSync(addon, 'MZ not the addon');
    const res = await run(['version']);
    expect(res.status).toBe(0);
    expect(res.stdout).toContain(`addon: C:\\`);
    expect(sha256(addon)).toBe(want);
  });

  it('refuses a cache folder others may write, with one line, and version fails', async () => {
    // Made by someone else, writable by everyone (Wine shows mode 0777 as Everyone: full control).
    rmSync(cache(), { recursive: true, force: true });
    mkdirSync(cache());
    chmodSync(cache(), 0o777);
    try {
      const version = await run(['version']);
      expect(version.status).toBe(1);
      expect(version.stdout).toMatch(/^addon: unavailable: refusing the addon cache C:\\.*\\hsm-driver: it may be written by S-1-1-0; remove the directory/m);
      const list = await run(['hsm', 'list']);
      expect(list.status).toBe(2);
      expect(list.stderr).toMatch(/^hsm-driver: refusing the addon cache .* may be written by S-1-1-0; .*\n$/);
      expect(readdirSync(cache()).filter((n) => n.startsWith('pkcs11-'))).toEqual([]); // nothing of ours was put there
    } finally {
      rmSync(cache(), { recursive: true, force: true });
    }
    // Removed, it is made again as ours and works.
    expect((await run(['version'])).status).toBe(0);
    expect(statSync(cache()).isDirectory()).toBe(true);
  });

  it('builds byte-identical exes from one commit', { timeout: 300_000 }, () => {
    const again = buildBinary(join(dir, 'again'), 'win-x64');
    expect(sha256(again)).toBe(sha256(windowsBuild().exe));
  });
});
