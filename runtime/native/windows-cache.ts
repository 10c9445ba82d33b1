// The addon cache on Windows: %LOCALAPPDATA%\hsm-driver, owned by this account and with a
// protected DACL that lets only this account, SYSTEM and Administrators write. Node cannot read
// or set ACLs, so the Win32 helper (our own small addon, win32.node) is loaded first, by hash;
// then the directory is secured (when we just made it) or checked (refused if others may write),
// and only then is anything else, pkcs11js's addon included, loaded from it.
//
// Why a check and not only a restrictive descriptor at creation: the helper that sets
// descriptors must itself be written somewhere first. A directory we create lives inside the
// account's profile (Windows restricts %LOCALAPPDATA% to the account, SYSTEM and Administrators),
// so the helper's first load is as private as the profile; we then give the directory its own
// protected DACL so it no longer depends on the profile's. An existing directory is checked
// before pkcs11js's addon is loaded, and a directory others may write is refused with the fix.
import { closeSync, constants, lstatSync, mkdirSync, openSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { ConfigError } from '../errors.js';
import type { Win32Native } from './win32-api.js';
import { firstLine, loadWith, type CacheGuard } from './embedded.js';
import { privateDirectorySddl, writeFault } from './windows-acl.js';

export const WIN32_ASSET = 'win32.node';

let helper: Win32Native | undefined;
let cache: CacheGuard | undefined;

/** The Win32 helper (single binary on Windows only), loaded with the cache's rules. */
export function win32Helper(): Win32Native {
  windowsCache();
  return helper!;
}

export function windowsCache(): CacheGuard {
  if (cache) return cache;
  const base = process.env.LOCALAPPDATA;
  if (!base || !isAbsolute(base)) throw new ConfigError('cannot place the native modules: LOCALAPPDATA is not set to an absolute path');
  const dir = join(base, 'hsm-driver');
  let created = false;
  try {
    mkdirSync(dir);
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ConfigError(`cannot create the addon cache ${dir}: ${firstLine(err)}`);
  }
  const st = lstatSync(dir);
  if (st.isSymbolicLink() || !st.isDirectory()) throw new ConfigError(`refusing the addon cache ${dir}: it is not a plain directory`);

  // Before the helper is loaded, only its hash can be checked.
  const byHash: CacheGuard = { dir, openIfPrivate: (file) => openPlainFile(file), loadPath: (_fd, file) => file };
  const win32 = loadWith(byHash, WIN32_ASSET).exports as Win32Native;
  const me = win32.currentUserSid();
  if (created) win32.setSecurity(dir, privateDirectorySddl(me));
  const fault = writeFault(win32.readSecurity(dir), me);
  if (fault) {
    throw new ConfigError(`refusing the addon cache ${dir}: it ${fault}; remove the directory (it is only a cache) and start again`);
  }
  helper = win32;
  cache = {
    dir,
    openIfPrivate(file) {
      const fd = openPlainFile(file);
      if (fd === undefined) return undefined;
      if (writeFault(win32.readSecurity(file), me) === undefined) return fd;
      closeSync(fd);
      return undefined;
    },
    // Windows keeps a loaded DLL's file from being rewritten; the directory check keeps others
    // from swapping it between our hash and the load.
    loadPath: (_fd, file) => file,
  };
  return cache;
}

/** An open descriptor on `file` if it is a regular file (not a link or a directory); else undefined. */
function openPlainFile(file: string): number | undefined {
  try {
    const st = lstatSync(file);
    if (st.isSymbolicLink() || !st.isFile()) return undefined;
    return openSync(file, constants.O_RDONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot open ${file}: ${firstLine(err)}`);
  }
}
