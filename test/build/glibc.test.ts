// The single binary and the addon it extracts run on glibc 2.28 (RHEL 8): no symbol of theirs
// needs a newer GLIBC_ version (objdump -T), and the addon needs no newer libstdc++ than Node.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { builtBinary, installAlone, runBinary } from './sea.js';

const FLOOR = '2.28';

function compare(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

/** The highest PREFIX_n.n symbol version in the file's dynamic symbol table. */
function maxVersion(file: string, prefix: 'GLIBC' | 'GLIBCXX'): string | undefined {
  const dump = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return [...dump.matchAll(new RegExp(`\\b${prefix}_(\\d+(?:\\.\\d+)*)\\b`, 'g'))].map((m) => m[1]!).sort(compare).at(-1);
}

describe('glibc floor', () => {
  let dir = '';
  let bin = '';
  let addon = '';

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hsm-glibc-'));
    const host = join(dir, 'host');
    bin = installAlone(builtBinary(), host);
    expect(runBinary(bin, ['version'], host).status).toBe(0); // extracts the addon
    const cache = join(host, '.cache', 'hsm-driver');
    addon = join(cache, readdirSync(cache).find((n) => n.endsWith('.node'))!);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`the binary needs no GLIBC_ above ${FLOOR}`, () => {
    const glibc = maxVersion(bin, 'GLIBC');
    console.info(`binary: max GLIBC_${glibc}, max GLIBCXX_${maxVersion(bin, 'GLIBCXX')}`);
    expect(glibc).toBeDefined();
    expect(compare(glibc!, FLOOR)).toBeLessThanOrEqual(0);
  });

  it(`the extracted addon needs no GLIBC_ above ${FLOOR}, nor a newer libstdc++ than the binary`, () => {
    const glibc = maxVersion(addon, 'GLIBC');
    const glibcxx = maxVersion(addon, 'GLIBCXX');
    console.info(`addon: max GLIBC_${glibc}, max GLIBCXX_${glibcxx ?? '(none)'}`);
    expect(glibc).toBeDefined();
    expect(compare(glibc!, FLOOR)).toBeLessThanOrEqual(0);
    if (glibcxx) expect(compare(glibcxx, maxVersion(bin, 'GLIBCXX')!)).toBeLessThanOrEqual(0);
  });
});
