// Builds the single binaries: dist/hsm-driver-linux-x64 and dist/hsm-driver-win-x64.exe, each the
// official Node binary (pinned, from the npm registry) with our bundle and our native modules
// injected as a Node single executable application. Offline once build/.cache holds the Node
// tarballs; two builds of one commit are byte-identical. Each binary runs its own `version`
// before it is kept (the Windows one under Wine, when Wine is installed).
// Usage: node build/sea.mjs [--outdir DIR] [--target linux-x64|win-x64 …]
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAddon, buildWindowsPkcs11js, buildWin32Helper } from './addon.mjs';
import { bundle, root } from './bundler.mjs';
import { officialNode } from './node-dist.mjs';
import { linuxSelfCheck, wineSelfCheck } from './self-check.mjs';

/** The fuse Node looks for to know a blob was injected (Node's SEA documentation). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/** Per target: the output name and the native modules it embeds (asset name → builder returning its SHA-256). */
const TARGETS = {
  'linux-x64': {
    binary: 'hsm-driver-linux-x64',
    assets: { 'pkcs11.node': (outfile) => buildAddon({ include: officialNode('linux-x64').include, outfile }) },
    selfCheck: linuxSelfCheck,
  },
  'win-x64': {
    binary: 'hsm-driver-win-x64.exe',
    assets: { 'pkcs11.node': (outfile) => buildWindowsPkcs11js({ outfile }), 'win32.node': (outfile) => buildWin32Helper({ outfile }) },
    selfCheck: wineSelfCheck,
  },
};

/** Runs a build tool, showing its output only when it fails. */
function quietly(command, args, cwd) {
  const res = spawnSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (res.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${res.status ?? res.signal ?? res.error?.message}):\n${res.stdout}${res.stderr}`);
}

async function buildBinary(target, outdir) {
  const spec = TARGETS[target];
  const node = officialNode(target);
  // The blob must come from a Node of the very version it is injected into: the Linux one of
  // that version makes it for both targets (it is plain script and assets, no snapshot).
  const blobMaker = officialNode('linux-x64').binary;
  // Everything is made in a temp dir and only the finished binary is renamed into outdir. The
  // SEA config names files relative to it, so no path of this machine reaches the blob.
  const work = mkdtempSync(join(tmpdir(), `hsm-driver-sea-${target}-`));
  try {
    const assets = {};
    for (const [name, build] of Object.entries(spec.assets)) assets[name] = build(join(work, name));
    await bundle({ outfile: join(work, 'hsm-driver.cjs'), sea: true, assets });
    writeFileSync(
      join(work, 'sea-config.json'),
      JSON.stringify({
        main: 'hsm-driver.cjs',
        output: 'sea-prep.blob',
        disableExperimentalSEAWarning: true,
        // Both would make the blob depend on this machine's V8 state; plain source is reproducible.
        useSnapshot: false,
        useCodeCache: false,
        assets: Object.fromEntries(Object.keys(assets).map((name) => [name, name])),
      }),
    );
    quietly(blobMaker, ['--experimental-sea-config', 'sea-config.json'], work);

    const binary = join(work, spec.binary);
    copyFileSync(node.binary, binary);
    chmodSync(binary, 0o755);
    // postject's CLI in a child: it exits non-zero on failure, and its parser's chatter about
    // Node's many ELF notes stays out of the build log unless something goes wrong.
    const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js');
    quietly(process.execPath, [postject, spec.binary, 'NODE_SEA_BLOB', 'sea-prep.blob', '--sentinel-fuse', SEA_FUSE], work);
    const version = spec.selfCheck(binary, work);

    mkdirSync(outdir, { recursive: true });
    const staged = join(outdir, `.${spec.binary}.tmp`);
    copyFileSync(binary, staged);
    chmodSync(staged, 0o755);
    renameSync(staged, join(outdir, spec.binary));
    return { path: join(outdir, spec.binary), version };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const args = process.argv.slice(2);
const at = args.indexOf('--outdir');
const outdir = at >= 0 ? args[at + 1] : join(root, 'dist');
const targets = args.flatMap((a, i) => (args[i - 1] === '--target' ? [a] : []));
for (const target of targets.length > 0 ? targets : Object.keys(TARGETS)) {
  if (!TARGETS[target]) throw new Error(`unknown --target ${target}; one of ${Object.keys(TARGETS).join(', ')}`);
  const { path, version } = await buildBinary(target, outdir);
  console.log(`built ${path}\n${version.trimEnd()}`);
}
