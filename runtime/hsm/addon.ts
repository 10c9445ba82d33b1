// Loads pkcs11js's native addon; build/bundler.mjs points pkcs11js's own require of it here.
// In the plain bundle it is the .node file esbuild copied beside the bundle. In the single
// binary it is an embedded asset that runtime/native extracts to a private per-user cache.
import { isSea } from 'node:sea';
import pkg from 'pkcs11js/package.json' with { type: 'json' };
import { ConfigError } from '../errors.js';
import { firstLine } from '../native/embedded.js';
import { loadEmbedded } from '../native/load.js';

export const PKCS11JS_VERSION: string = pkg.version;

/** The SEA asset that holds the addon (build/sea.mjs embeds it under this name). */
export const ADDON_ASSET = 'pkcs11.node';

let origin: string | undefined;

/** In the single binary: the file the addon was loaded from, or `unavailable: why`. */
export function addonOrigin(): string | undefined {
  return origin;
}

/** The native module pkcs11js wraps. Called once, when pkcs11js is first required. */
export function loadAddon(): object {
  // Only reached in the plain bundle, where esbuild turns this into a require of its copy.
  if (!isSea()) return require('pkcs11js/build/Release/pkcs11.node') as object;
  try {
    const { exports, file } = loadEmbedded(ADDON_ASSET);
    origin = file;
    return exports;
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
