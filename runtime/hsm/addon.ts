// Loads pkcs11js's native addon; build/bundler.mjs points pkcs11js's own require of it here.
// In the plain bundle it is the .node file esbuild copied beside the bundle. In the single
// binary it is an embedded asset, written once to a per-user cache directory under its
// build-time SHA-256 and loaded only from a descriptor whose content was hashed, so no other
// user can plant or swap the library we dlopen.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { getRawAsset, isSea } from 'node:sea';
import pkg from 'pkcs11js/package.json' with { type: 'json' };
import { ConfigError } from '../errors.js';

export const PKCS11JS_VERSION: string = pkg.version;

/** The SEA asset that holds the addon (build/sea.mjs embeds it under this name). */
export const ADDON_ASSET = 'pkcs11.node';

/** Set by esbuild in the single binary's bundle only (build/bundler.mjs). */
declare const HSM_DRIVER_ADDON_SHA256: string | undefined;

let origin: string | undefined;

/** In the single binary: the file the addon was loaded from, or why it was not. */
export function addonOrigin(): string | undefined {
  return origin;
}

/** The native module pkcs11js wraps. Called once, when pkcs11js is first required. */
export function loadAddon(): object {
  // Only reached in the plain bundle, where esbuild turns this into a require of its copy.
  if (!isSea()) return require('pkcs11js/build/Release/pkcs11.node') as object;
  try {
    return loadEmbedded();
  } catch (err) {
    const error = err instanceof ConfigError ? err : new ConfigError(`cannot load the PKCS#11 addon: ${firstLine(err)}`);
    origin = `unavailable: ${error.message}`;
    // pkcs11js is required while the bundle starts, before any command runs. Fail where the HSM
    // is first used instead, as a ConfigError (main prints one line and exits 2), so commands
    // that need no HSM, like `version`, still work.
    return {
      PKCS11: class {
        constructor() {
          throw error;
        }
      },
    };
  }
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0]!;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function loadEmbedded(): object {
  const want = typeof HSM_DRIVER_ADDON_SHA256 === 'string' ? HSM_DRIVER_ADDON_SHA256 : undefined;
  if (!want) throw new ConfigError('this build does not record the hash of its PKCS#11 addon');
  const dir = cacheDir();
  const file = join(dir, `pkcs11-${want}.node`);
  let fd = openVerified(file, want);
  if (fd === undefined) {
    writeAtomically(dir, file, want);
    fd = openVerified(file, want);
    if (fd === undefined) throw new ConfigError(`${file} does not hold the embedded PKCS#11 addon, even after rewriting it`);
  }
  try {
    const module = { exports: {} };
    // dlopen the very file that was hashed: through the open descriptor, not its name.
    process.dlopen(module, hasProcFd() ? `/proc/self/fd/${fd}` : file);
    origin = file;
    return module.exports;
  } catch (err) {
    throw new ConfigError(`cannot load the PKCS#11 addon ${file}: ${firstLine(err)}`);
  } finally {
    closeSync(fd);
  }
}

function hasProcFd(): boolean {
  try {
    return statSync('/proc/self/fd').isDirectory();
  } catch {
    return false;
  }
}

/**
 * $XDG_CACHE_HOME/hsm-driver or ~/.cache/hsm-driver, created 0700. Refused unless it is a real
 * directory of ours that no one else may write: anyone who can write there could swap the
 * library between our check and our load.
 */
function cacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  const home = homedir();
  // The XDG spec says to ignore a relative path.
  const base = xdg && isAbsolute(xdg) ? xdg : home && isAbsolute(home) ? join(home, '.cache') : undefined;
  if (!base) throw new ConfigError('cannot place the PKCS#11 addon: set HOME or XDG_CACHE_HOME');
  const dir = join(base, 'hsm-driver');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`cannot create the addon cache ${dir}: ${firstLine(err)}`);
  }
  const st = lstatSync(dir);
  const uid = process.getuid!();
  const fault = st.isSymbolicLink()
    ? 'is a symbolic link'
    : !st.isDirectory()
      ? 'is not a directory'
      : st.uid !== uid
        ? `is owned by uid ${st.uid}, not ${uid}`
        : (st.mode & 0o022) !== 0
          ? `is writable by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 700 ${dir}`
          : undefined;
  if (fault) throw new ConfigError(`refusing the addon cache ${dir}: it ${fault}`);
  return dir;
}

/**
 * An open descriptor on `file` if it is a regular file of ours, writable by no one else, whose
 * content has SHA-256 `want`; else undefined (missing, a link, or wrong: to be replaced).
 */
function openVerified(file: string, want: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK); // a planted FIFO must not hang us
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') return undefined;
    throw new ConfigError(`cannot open the PKCS#11 addon ${file}: ${firstLine(err)}`);
  }
  const st = fstatSync(fd);
  if (st.isFile() && st.uid === process.getuid!() && (st.mode & 0o022) === 0 && sha256(readFileSync(fd)) === want) return fd;
  closeSync(fd);
  return undefined;
}

/** Writes the embedded addon to a fresh temp name, syncs it, and renames it over `file`. */
function writeAtomically(dir: string, file: string, want: string): void {
  const data = new Uint8Array(getRawAsset(ADDON_ASSET));
  if (sha256(data) !== want) throw new ConfigError('the embedded PKCS#11 addon does not match its recorded hash: the binary is damaged');
  const tmp = join(dir, `.pkcs11-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      for (let at = 0; at < data.length; ) at += writeSync(fd, data, at);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new ConfigError(`cannot write the PKCS#11 addon to ${dir}: ${firstLine(err)}`);
  }
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
