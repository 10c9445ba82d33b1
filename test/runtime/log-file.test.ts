// The Windows service's log file: appends, rotates by size into NAME.log.1 … .N, keeps N.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { RotatingFile } from '../../runtime/log-file.js';

let dir = '';
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('rotates before a line would pass maxBytes, keeps the newest generations, loses no line', () => {
  dir = mkdtempSync(join(tmpdir(), 'log-file-'));
  const path = join(dir, 'logs', 'svc.log');
  const file = new RotatingFile(path, { maxBytes: 100, keep: 2 });
  const lines = Array.from({ length: 16 }, (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(22)}\n`); // 25 bytes: 4 fit in 100
  for (const line of lines) file.write(line);
  file.close();
  // 16 lines make 4 files of 4; the oldest went beyond keep = 2.
  expect(readFileSync(path, 'utf8')).toBe(lines.slice(12).join(''));
  expect(readFileSync(`${path}.1`, 'utf8')).toBe(lines.slice(8, 12).join(''));
  expect(readFileSync(`${path}.2`, 'utf8')).toBe(lines.slice(4, 8).join(''));
  expect(existsSync(`${path}.3`)).toBe(false);
});

test('appends to an existing file and counts what it holds', () => {
  dir = mkdtempSync(join(tmpdir(), 'log-file-'));
  const path = join(dir, 'svc.log');
  const first = new RotatingFile(path, { maxBytes: 50 });
  first.write(`${'a'.repeat(39)}\n`);
  first.close();
  const second = new RotatingFile(path, { maxBytes: 50 });
  second.write(`${'b'.repeat(19)}\n`); // 40 + 20 > 50: rotates first
  second.close();
  expect(readFileSync(`${path}.1`, 'utf8')).toBe(`${'a'.repeat(39)}\n`);
  expect(readFileSync(path, 'utf8')).toBe(`${'b'.repeat(19)}\n`);
});
