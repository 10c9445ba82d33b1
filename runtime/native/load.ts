// Which cache rules apply on this platform, decided once; the entry point for embedded modules.
import { loadWith, type CacheGuard } from './embedded.js';
import { posixCache } from './posix-cache.js';
import { windowsCache } from './windows-cache.js';

let guard: CacheGuard | undefined;

/** Loads the embedded native module `asset` (single binary only); returns its exports and file. */
export function loadEmbedded(asset: string): { exports: object; file: string } {
  guard ??= process.platform === 'win32' ? windowsCache() : posixCache();
  return loadWith(guard, asset);
}
