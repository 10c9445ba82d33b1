// Native modules embedded in the single binary (pkcs11js's addon; on Windows also our Win32
// helper). Each is written once to a per-user cache directory under its build-time SHA-256,
// checked before load, and replaced if it differs, so no other user can plant or swap the
// library we load. What "no other user can write here" means is the platform's part: POSIX
// owner and mode (posix-cache.ts) or the Windows owner and DACL (windows-cache.ts).
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { getRawAsset } from 'node:sea';
import { ConfigError } from '../errors.js';

/** Set by esbuild in the single binary's bundle only (build/bundler.mjs): asset name → SHA-256. */
declare const HSM_DRIVER_ASSETS: Record<string, string> | undefined;

/** What a platform decides about the cache directory and the files in it. */
export interface CacheGuard {
  /** The directory, created if needed and checked (throws ConfigError when others may write it). */
  dir: string;
  /** Opens `file` for reading if it is a regular file only we (and the system) may write; else undefined. */
  openIfPrivate(file: string): number | undefined;
  /** How to load the file behind `fd` (opened from `file`) so that it is the bytes we hashed. */
  loadPath(fd: number, file: string): string;
  /** Hint appended to a load failure (e.g. a noexec mount on Linux). */
  loadHint?(err: unknown): string | undefined;
}

export function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]!;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The build-time SHA-256 of an embedded asset. */
export function assetHash(asset: string): string {
  const hash = typeof HSM_DRIVER_ASSETS === 'object' ? HSM_DRIVER_ASSETS[asset] : undefined;
  if (!hash) throw new ConfigError(`this build does not record the hash of its ${asset}`);
  return hash;
}

/** Writes (if needed), verifies and loads the embedded native module `asset` under `cache`'s rules. */
export function loadWith(cache: CacheGuard, asset: string): { exports: object; file: string } {
  const want = assetHash(asset);
  const file = join(cache.dir, `${asset.replace(/\.node$/, '')}-${want}.node`);
  let fd = openVerified(cache, file, want);
  if (fd === undefined) {
    writeAtomically(cache.dir, file, asset, want);
    fd = openVerified(cache, file, want);
    if (fd === undefined) throw new ConfigError(`${file} does not hold the embedded ${asset}, even after rewriting it`);
  }
  try {
    const module = { exports: {} };
    process.dlopen(module, cache.loadPath(fd, file));
    return { exports: module.exports, file };
  } catch (err) {
    const hint = cache.loadHint?.(err);
    throw new ConfigError(`cannot load ${file}: ${firstLine(err)}${hint ? `; ${hint}` : ''}`);
  } finally {
    closeSync(fd);
  }
}

function openVerified(cache: CacheGuard, file: string, want: string): number | undefined {
  const fd = cache.openIfPrivate(file);
  if (fd === undefined) return undefined;
  if (sha256(readFileSync(fd)) === want) return fd;
  closeSync(fd);
  return undefined;
}

/** Writes the embedded asset to a fresh temp name, syncs it, and renames it over `file`. */
function writeAtomically(dir: string, file: string, asset: string, want: string): void {
  const data = new Uint8Array(getRawAsset(asset));
  if (sha256(data) !== want) throw new ConfigError(`the embedded ${asset} does not match its recorded hash: the binary is damaged`);
  const tmp = join(dir, `.${asset}-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  try {
    // O_NOFOLLOW is POSIX only; O_EXCL alone already refuses a planted name on Windows.
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0), 0o600);
    try {
      for (let at = 0; at < data.length; ) at += writeSync(fd, data, at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new ConfigError(`cannot write ${asset} to ${dir}: ${firstLine(err)}`);
  }
  if (process.platform === 'win32') return; // directories cannot be opened for fsync there
  // Make the rename itself durable; a failure here costs only a rewrite next time.
  try {
    const dfd = openSync(dir, constants.O_RDONLY);
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    /* best effort */
  }
}
