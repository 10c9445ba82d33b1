// Builds dist/hsm-driver-linux-x64: the official Node binary (pinned, from the npm registry)
// with our bundle and our pkcs11js addon injected as a Node single executable application.
// Offline once build/.cache holds the Node tarball; two builds of one commit are byte-identical.
// Usage: node build/sea.mjs [--outdir DIR]
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAddon } from './addon.mjs';
import { bundle, root } from './bundler.mjs';
import { NODE_VERSION, officialNode } from './node-dist.mjs';

const BINARY = 'hsm-driver-linux-x64';
/** The fuse Node looks for to know a blob was injected (Node's SEA documentation). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** Must match ADDON_ASSET in runtime/hsm/addon.ts. */
const ADDON_ASSET = 'pkcs11.node';

/** Runs a build tool, showing its output only when it fails. */
function quietly(command, args, cwd) {
  const res = spawnSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (res.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${res.status ?? res.signal ?? res.error?.message}):\n${res.stdout}${res.stderr}`);
}

/** Runs `version` the way a bare host would: an empty dir, no node_modules, nothing inherited. The addon line shows it was extracted and loaded. */
function selfCheck(binary, work) {
  const home = join(work, 'home');
  mkdirSync(home);
  const out = execFileSync(binary, ['version'], { cwd: home, env: { PATH: '/usr/bin:/bin', HOME: home }, encoding: 'utf8' });
  const addon = /^addon: (.*)$/m.exec(out)?.[1] ?? '';
  if (!out.startsWith('hsm-driver ') || !out.includes(`\nnode: v${NODE_VERSION}\n`) || !addon.startsWith(join(home, '.cache'))) {
    throw new Error(`${binary} version printed:\n${out}`);
  }
  return out;
}

async function buildBinary(outdir) {
  const node = officialNode();
  // Everything is made in a temp dir and only the finished binary is renamed into outdir. The
  // SEA config names files relative to it, so no path of this machine reaches the blob.
  const work = mkdtempSync(join(tmpdir(), 'hsm-driver-sea-'));
  try {
    const addonSha256 = buildAddon({ include: node.include, outfile: join(work, ADDON_ASSET) });
    await bundle({ outfile: join(work, 'hsm-driver.cjs'), sea: true, addonSha256 });
    writeFileSync(
      join(work, 'sea-config.json'),
      JSON.stringify({
        main: 'hsm-driver.cjs',
        output: 'sea-prep.blob',
        disableExperimentalSEAWarning: true,
        // Both would make the blob depend on this machine's V8 state; plain source is reproducible.
        useSnapshot: false,
        useCodeCache: false,
        assets: { [ADDON_ASSET]: ADDON_ASSET },
      }),
    );
    // The blob must come from the Node it is injected into: use that very binary to make it.
    quietly(node.binary, ['--experimental-sea-config', 'sea-config.json'], work);

    const binary = join(work, BINARY);
    copyFileSync(node.binary, binary);
    chmodSync(binary, 0o755);
    // postject's CLI in a child: it exits non-zero on failure, and its parser's chatter about
    // Node's many ELF notes stays out of the build log unless something goes wrong.
    const postject = createRequire(import.meta.url).resolve('postject/dist/cli.js');
    quietly(process.execPath, [postject, BINARY, 'NODE_SEA_BLOB', 'sea-prep.blob', '--sentinel-fuse', SEA_FUSE], work);
    const version = selfCheck(binary, work);

    mkdirSync(outdir, { recursive: true });
    const staged = join(outdir, `.${BINARY}.tmp`);
    copyFileSync(binary, staged);
    chmodSync(staged, 0o755);
    renameSync(staged, join(outdir, BINARY));
    return { path: join(outdir, BINARY), version };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const at = process.argv.indexOf('--outdir');
const { path, version } = await buildBinary(at > 0 ? process.argv[at + 1] : join(root, 'dist'));
console.log(`built ${path}\n${version.trimEnd()}`);
