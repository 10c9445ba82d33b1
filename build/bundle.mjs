// Bundles the driver into dist/hsm-driver.cjs with esbuild. The pkcs11js addon is copied beside
// it (dist/pkcs11-<hash>.node) and loaded by a relative require.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
rmSync(join(root, 'dist'), { recursive: true, force: true });

await build({
  entryPoints: [join(root, 'runtime/main.ts')],
  outfile: join(root, 'dist/hsm-driver.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  loader: { '.node': 'copy' },
  // pino's optional transports are loaded by worker threads from files; we log synchronously
  // to stderr and never use them.
  external: ['pino-pretty'],
  // yargs 18 is ESM and calls createRequire(import.meta.url); give it this file's URL.
  banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
  define: { 'import.meta.url': '__import_meta_url' },
  legalComments: 'none',
  logLevel: 'warning',
});
console.log('built dist/hsm-driver.cjs');
