// Bundles the driver into dist/hsm-driver.cjs with esbuild. The pkcs11js addon is copied beside
// it (dist/pkcs11-<hash>.node) and loaded by a relative require.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// --outdir DIR builds elsewhere (the tests build their own copy, so a concurrent build of dist/
// never hands them a half-written bundle).
const at = process.argv.indexOf('--outdir');
const outdir = at > 0 ? process.argv[at + 1] : join(root, 'dist');
rmSync(outdir, { recursive: true, force: true });

await build({
  entryPoints: [join(root, 'runtime/main.ts')],
  outfile: join(outdir, 'hsm-driver.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  loader: { '.node': 'copy' },
  // yargs 18 is ESM and calls createRequire(import.meta.url); give it this file's URL.
  banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__import_meta_url' },
  legalComments: 'none',
  logLevel: 'warning',
});
console.log(`built ${join(outdir, 'hsm-driver.cjs')}`);
