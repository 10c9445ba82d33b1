// Bundles the driver into dist/hsm-driver.cjs with esbuild. The pkcs11js addon is copied beside
// it (dist/pkcs11-<hash>.node) and loaded by a relative require (see bundler.mjs).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { bundle, root } from './bundler.mjs';

// --outdir DIR builds elsewhere (the tests build their own copy, so a concurrent build of dist/
// never hands them a half-written bundle).
const at = process.argv.indexOf('--outdir');
const outdir = at > 0 ? process.argv[at + 1] : join(root, 'dist');
rmSync(outdir, { recursive: true, force: true });

await bundle({ outfile: join(outdir, 'hsm-driver.cjs') });
console.log(`built ${join(outdir, 'hsm-driver.cjs')}`);
