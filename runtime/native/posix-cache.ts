// The addon cache on Linux: $XDG_CACHE_HOME/hsm-driver or ~/.cache/hsm-driver, a 0700 directory
// of ours; files in it are ours and writable by no one else. Loaded through /proc/self/fd, so
// the file we dlopen is the very one we hashed.
import { closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { ConfigError } from '../errors.js';
import { firstLine, type CacheGuard } from './embedded.js';

export function posixCache(): CacheGuard {
  const uid = process.getuid!();
  return {
    dir: cacheDir(uid),
    openIfPrivate(file) {
      let fd: number;
      try {
        fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK); // a planted FIFO must not hang us
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ELOOP') return undefined;
        throw new ConfigError(`cannot open ${file}: ${firstLine(err)}`);
      }
      const st = fstatSync(fd);
      if (st.isFile() && st.uid === uid && (st.mode & 0o022) === 0) return fd;
      closeSync(fd);
      return undefined;
    },
    loadPath: (fd, file) => (hasProcFd() ? `/proc/self/fd/${fd}` : file),
    loadHint: (err) =>
      /failed to map segment|operation not permitted/i.test(firstLine(err))
        ? 'the cache directory is probably on a noexec filesystem (a tmpfs?): set XDG_CACHE_HOME to a directory that allows executables'
        : undefined,
  };
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
function cacheDir(uid: number): string {
  const xdg = process.env.XDG_CACHE_HOME;
  const home = homedir();
  // The XDG spec says to ignore a relative path.
  const base = xdg && isAbsolute(xdg) ? xdg : home && isAbsolute(home) ? join(home, '.cache') : undefined;
  if (!base) throw new ConfigError('cannot place the PKCS#11 addon: set HOME or XDG_CACHE_HOME');
  const dir = join(base, 'hsm-driver');
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`cannot create the addon cache ${dir}: ${firstLine(err)}; set XDG_CACHE_HOME to a directory this user may write that allows executables`);
  }
  const st = lstatSync(dir);
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
