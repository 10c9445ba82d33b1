// The esbuild settings both artefacts share: the plain bundle (dist/hsm-driver.cjs) and the
// script the single binary embeds. pkcs11js's native addon always comes through our loader.
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** HEAD's commit, `-dirty` when tracked files differ from it, `unknown` outside a git checkout. */
export function gitCommit() {
  const git = (...args) => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const head = git('rev-parse', 'HEAD');
    return git('status', '--porcelain', '--untracked-files=no') === '' ? head : `${head}-dirty`;
  } catch {
    return 'unknown';
  }
}

/**
 * pkcs11js loads its addon with require("./build/Release/pkcs11.node"); point that at
 * runtime/hsm/addon.ts, which in the plain bundle requires the copy esbuild puts beside it and in
 * the single binary extracts the embedded one. The single binary never takes the first path,
 * so there the .node file stays out of the bundle.
 */
function addonLoader(sea) {
  return {
    name: 'pkcs11-addon',
    setup(b) {
      b.onResolve({ filter: /^\.\/build\/Release\/pkcs11\.node$/ }, (args) =>
        args.importer.includes(`${sep}pkcs11js${sep}`) ? { path: 'pkcs11.node', namespace: 'pkcs11-addon' } : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: 'pkcs11-addon' }, () => ({
        contents: "module.exports = require('./runtime/hsm/addon.ts').loadAddon();",
        resolveDir: root,
        loader: 'js',
      }));
      if (sea) b.onResolve({ filter: /^pkcs11js\/build\/Release\/pkcs11\.node$/ }, (args) => ({ path: args.path, external: true }));
    },
  };
}

/**
 * tiny-secp256k1 reads its WebAssembly file from beside its own source at load; in a bundle
 * (and in the single binary) there is no such file, so its loader gets the bytes built in.
 */
const embedSecp256k1Wasm = {
  name: 'embed-secp256k1-wasm',
  setup(b) {
    b.onLoad({ filter: /tiny-secp256k1[\\/]lib[\\/](cjs[\\/])?wasm_loader\.c?js$/ }, (args) => ({
      contents: `import binary from ${JSON.stringify(join(dirname(args.path), args.path.includes(`${sep}cjs${sep}`) ? '..' : '.', 'secp256k1.wasm'))};
import * as rand from './rand.${args.path.endsWith('.cjs') ? 'cjs' : 'js'}';
import * as validate_error from './validate_error.${args.path.endsWith('.cjs') ? 'cjs' : 'js'}';
const instance = new WebAssembly.Instance(new WebAssembly.Module(binary), { './rand.js': rand, './validate_error.js': validate_error });
export default instance.exports;`,
      resolveDir: dirname(args.path),
      loader: 'js',
    }));
  },
};

/**
 * Writes one CJS bundle of runtime/main.ts to `outfile`. `sea` builds the single binary's script,
 * which must know the SHA-256 of each native module embedded beside it (`assets`: name → hash).
 */
export async function bundle({ outfile, sea = false, assets = undefined }) {
  const define = {
    // yargs 18 is ESM and calls createRequire(import.meta.url); give it this file's URL.
    'import.meta.url': '__import_meta_url',
    HSM_DRIVER_COMMIT: JSON.stringify(gitCommit()),
  };
  if (sea) define.HSM_DRIVER_ASSETS = JSON.stringify(assets);
  await build({
    absWorkingDir: root, // paths in the bundle's comments are relative to it, wherever we run from
    entryPoints: [join(root, 'runtime/entry.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    loader: { '.node': 'copy', '.wasm': 'binary' },
    plugins: [addonLoader(sea), embedSecp256k1Wasm],
    banner: { js: "const __import_meta_url = require('node:url').pathToFileURL(__filename).href;" },
    define,
    legalComments: 'none',
    logLevel: 'warning',
  });
}
