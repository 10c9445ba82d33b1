// The driver's version, from package.json (bundled in at build time), and what `version` prints.
import { DatabaseSync } from 'node:sqlite';
import pkg from '../package.json' with { type: 'json' };
import { addonOrigin, PKCS11JS_VERSION } from './hsm/addon.js';

export const VERSION: string = pkg.version;

/** The build's git commit; esbuild defines it (build/bundler.mjs), unbundled runs have none. */
declare const HSM_DRIVER_COMMIT: string | undefined;

/** `version`: the first line is `hsm-driver <version>` (scripts read it), then what the build holds. */
export function versionLines(): string[] {
  const db = new DatabaseSync(':memory:');
  const sqlite = String((db.prepare('select sqlite_version() as v').get() as { v: unknown }).v);
  db.close();
  const addon = addonOrigin();
  return [
    `hsm-driver ${VERSION}`,
    `commit: ${typeof HSM_DRIVER_COMMIT === 'string' ? HSM_DRIVER_COMMIT : 'unknown'}`,
    `node: ${process.version}`,
    `pkcs11js: ${PKCS11JS_VERSION}`,
    `sqlite: ${sqlite}`,
    `target: ${process.platform}-${process.arch}`,
    ...(addon ? [`addon: ${addon}`] : []),
  ];
}

