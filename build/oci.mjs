// Writes dist/hsm-driver-oci.tar, the container image, with no daemon and no registry: one tar
// that is both an OCI image layout (oci-layout, index.json) and a docker-archive (manifest.json),
// so podman load, docker load, ctr images import and skopeo all take it. One layer: the Linux
// binary, exactly the shared libraries it needs (plus OpenSSL's, which most vendor PKCS#11
// modules need) taken from this Debian host, a non-root user, /tmp, and the addon already in
// its cache. Entries sorted, owners/modes fixed, mtimes from the commit: same commit, same bytes.
// Usage: node build/oci.mjs [--binary dist/hsm-driver-linux-x64] [--out dist/hsm-driver-oci.tar]
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { root } from './bundler.mjs';
import { tar } from './oci-tar.mjs';

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
export const IMAGE_NAME = 'hsm-driver';
const UID = 10001;
const HOME = '/home/hsm-driver';
const DATA = '/var/lib/hsm-driver';
const LIBDIR = 'usr/lib/x86_64-linux-gnu';
/** Not needed by the driver, but by most vendor modules (and SoftHSM): shipped so they load as they are. */
const EXTRA_LIBS = ['libssl.so.3', 'libcrypto.so.3'];

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/** The commit's time (or SOURCE_DATE_EPOCH): every mtime and the image's creation date. */
function sourceDate() {
  if (process.env.SOURCE_DATE_EPOCH) return Number(process.env.SOURCE_DATE_EPOCH);
  try {
    return Number(execFileSync('git', ['-C', root, 'log', '-1', '--format=%ct'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    return 0;
  }
}

/** `version` run in a scratch home: what the image is labelled with, and the addon it extracts. */
function inspectBinary(binary) {
  const home = mkdtempSync(join(tmpdir(), 'hsm-driver-oci-'));
  try {
    const res = spawnSync(binary, ['version'], { env: { PATH: '/usr/bin:/bin', HOME: home, XDG_CACHE_HOME: join(home, 'cache') }, encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`${binary} version failed (${res.status ?? res.signal}):\n${res.stdout}${res.stderr}`);
    const field = (name) => new RegExp(`^${name}: (.*)$`, 'm').exec(res.stdout)?.[1];
    const addon = field('addon');
    if (!addon?.startsWith(join(home, 'cache'))) throw new Error(`${binary} version did not extract its addon:\n${res.stdout}`);
    return { version: /^hsm-driver (\S+)/.exec(res.stdout)[1], commit: field('commit') ?? 'unknown', addon: { name: basename(addon), data: readFileSync(addon) } };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** `ldd` of a file: soname → path as the loader found it (the interpreter under its own path). */
function ldd(file) {
  const out = execFileSync('ldd', [file], { encoding: 'utf8' });
  const libs = new Map();
  for (const line of out.split('\n')) {
    const m = /^\s*(\S+)(?: => (.+?))? \(0x[0-9a-f]+\)$/.exec(line);
    if (/ => not found/.test(line)) throw new Error(`ldd ${file}: ${line.trim()}`);
    if (!m || m[1].startsWith('linux-vdso')) continue;
    libs.set(basename(m[1]), m[2] ?? m[1]);
  }
  return libs;
}

/** The binary's libraries, and EXTRA_LIBS with theirs, found where this host's loader finds them. */
function sharedLibraries(binary) {
  const libs = ldd(binary);
  const cache = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
  for (const name of EXTRA_LIBS) {
    const path = new RegExp(`^\\s*${name.replace(/[.+]/g, '\\$&')} \\(libc6,x86-64\\) => (\\S+)$`, 'm').exec(cache)?.[1];
    if (!path) throw new Error(`${name} is not installed on this host (Debian: apt-get install libssl3)`);
    libs.set(name, path);
    for (const [dep, at] of ldd(path)) libs.set(dep, at);
  }
  return [...libs].map(([soname, path]) => ({ soname, path, real: realpathSync(path) }));
}

/** Debian package → version for the libraries, from dpkg (merged /usr: it may know the /lib path). */
function debianPackages(libs) {
  const paths = libs.flatMap((l) => [l.path, l.real, l.real.replace(/^\/usr\/lib\//, '/lib/')]);
  const found = spawnSync('dpkg', ['-S', ...new Set(paths)], { encoding: 'utf8' });
  if (found.error) throw new Error(`dpkg is not available: the image takes its libraries from a Debian build host (${found.error.message})`);
  const owners = new Map(); // path → package
  for (const m of found.stdout.matchAll(/^([^:\s]+)(?::\w+)?: (.+)$/gm)) owners.set(m[2], m[1]);
  const packages = new Set();
  for (const l of libs) {
    const owner = [l.path, l.real, l.real.replace(/^\/usr\/lib\//, '/lib/')].map((p) => owners.get(p)).find(Boolean);
    if (!owner) throw new Error(`no Debian package owns ${l.real}`);
    packages.add(owner);
  }
  const out = execFileSync('dpkg-query', ['-W', '-f', '${Package} ${Version}\n', ...[...packages].sort()], { encoding: 'utf8' });
  return Object.fromEntries(out.trim().split('\n').map((line) => line.split(' ')));
}

/** The root file system, sorted so that each directory comes before what it holds. */
function layerEntries({ binary, libs, addon, mtime }) {
  const dir = (path, mode = 0o755, uid = 0) => ({ path, type: 'dir', mode, uid, gid: uid, mtime });
  const file = (path, data, mode = 0o644, uid = 0) => ({ path, type: 'file', mode, uid, gid: uid, mtime, data: Buffer.from(data) });
  const link = (path, target) => ({ path, type: 'symlink', mode: 0o777, mtime, target });
  const entries = [
    // Debian's merged /usr layout, so the interpreter path in the binary (and in vendor modules) resolves.
    link('lib', 'usr/lib'),
    dir('lib64'),
    dir('usr'), dir('usr/lib'), dir(LIBDIR), dir('usr/local'), dir('usr/local/bin'),
    file('usr/local/bin/hsm-driver', readFileSync(binary), 0o755),
    dir('etc'),
    file('etc/passwd', `root:x:0:0:root:/root:/usr/sbin/nologin\nhsm-driver:x:${UID}:${UID}:hsm-driver:${HOME}:/usr/sbin/nologin\n`),
    file('etc/group', `root:x:0:\nhsm-driver:x:${UID}:\n`),
    file('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\n'),
    dir('tmp', 0o1777),
    dir('home'),
    // The addon cache as the driver makes it (0700, ours), already holding the addon: a
    // read-only root file system then needs no writable, executable mount for it.
    dir(HOME.slice(1), 0o700, UID),
    dir(`${HOME.slice(1)}/.cache`, 0o700, UID),
    dir(`${HOME.slice(1)}/.cache/hsm-driver`, 0o700, UID),
    file(`${HOME.slice(1)}/.cache/hsm-driver/${addon.name}`, addon.data, 0o600, UID),
    dir('var'), dir('var/lib'),
    dir(DATA.slice(1), 0o700, UID),
  ];
  for (const l of libs) {
    const name = basename(l.real);
    entries.push(file(`${LIBDIR}/${name}`, readFileSync(l.real), statSync(l.real).mode & 0o111 ? 0o755 : 0o644));
    if (l.soname !== name) entries.push(link(`${LIBDIR}/${l.soname}`, name));
    // The interpreter is asked for by its /lib64 path: keep that path, pointing into the lib dir.
    if (!/^(\/usr)?\/lib\/x86_64-linux-gnu\//.test(l.path)) entries.push(link(l.path.slice(1), `/${LIBDIR}/${name}`));
  }
  const unique = new Map(entries.map((e) => [e.path, e]));
  for (const e of unique.values()) if (!unique.has(dirname(e.path)) && dirname(e.path) !== '.') throw new Error(`oci: ${e.path} has no parent entry`);
  return [...unique.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Builds the image archive from a Linux binary; returns its path, size and sha256. */
export function buildImage({ binary, out }) {
  const mtime = sourceDate();
  const created = new Date(mtime * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const info = inspectBinary(binary);
  const libs = sharedLibraries(binary);
  const debs = debianPackages(libs);

  const layerTar = tar(layerEntries({ binary, libs, addon: info.addon, mtime }));
  // gzip's header holds no name and a zero mtime in Node's zlib: the same input, the same bytes.
  const layer = gzipSync(layerTar, { level: 6 });
  const source = typeof pkg.repository === 'string' ? pkg.repository : pkg.repository?.url;
  const labels = {
    'org.opencontainers.image.title': IMAGE_NAME,
    'org.opencontainers.image.description': pkg.description,
    'org.opencontainers.image.version': info.version,
    'org.opencontainers.image.revision': info.commit,
    ...(source ? { 'org.opencontainers.image.source': source } : {}),
    'org.opencontainers.image.licenses': pkg.license,
    'org.opencontainers.image.created': created,
    ...Object.fromEntries(Object.entries(debs).map(([name, version]) => [`hsm-driver.debian.${name}`, version])),
  };
  const config = Buffer.from(
    JSON.stringify({
      created,
      architecture: 'amd64',
      os: 'linux',
      config: {
        User: `${UID}:${UID}`,
        Env: ['PATH=/usr/local/bin:/usr/bin:/bin', `HOME=${HOME}`, `SQLITE_PATH=${DATA}/keys.db`],
        Entrypoint: ['/usr/local/bin/hsm-driver'],
        Cmd: ['run'],
        WorkingDir: HOME,
        Labels: labels,
        StopSignal: 'SIGTERM',
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(layerTar)}`] },
      history: [{ created, created_by: 'build/oci.mjs', comment: `hsm-driver ${info.version} (${info.commit})` }],
    }),
  );
  const blob = (mediaType, data) => ({ mediaType, digest: `sha256:${sha256(data)}`, size: data.length, data });
  const configBlob = blob('application/vnd.oci.image.config.v1+json', config);
  const layerBlob = blob('application/vnd.oci.image.layer.v1.tar+gzip', layer);
  const describe = ({ mediaType, digest, size }) => ({ mediaType, digest, size });
  const manifest = blob(
    'application/vnd.oci.image.manifest.v1+json',
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: describe(configBlob), layers: [describe(layerBlob)], annotations: { 'org.opencontainers.image.created': created } })),
  );
  const tag = `${IMAGE_NAME}:${info.version}`;
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ ...describe(manifest), annotations: { 'io.containerd.image.name': `docker.io/library/${tag}`, 'org.opencontainers.image.ref.name': info.version } }],
  };
  const path = (b) => `blobs/sha256/${b.digest.slice('sha256:'.length)}`;
  // docker load reads manifest.json; the others read index.json. Both name the same blobs.
  const dockerManifest = [{ Config: path(configBlob), RepoTags: [tag], Layers: [path(layerBlob)] }];
  const f = (p, data) => ({ path: p, type: 'file', mode: 0o644, mtime, data: Buffer.isBuffer(data) ? data : Buffer.from(typeof data === 'string' ? data : JSON.stringify(data)) });
  const d = (p) => ({ path: p, type: 'dir', mode: 0o755, mtime });
  const archive = tar(
    [f('oci-layout', { imageLayoutVersion: '1.0.0' }), f('index.json', index), f('manifest.json', dockerManifest), d('blobs'), d('blobs/sha256'), ...[configBlob, layerBlob, manifest].map((b) => f(path(b), b.data))].sort(
      (a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
    ),
  );

  mkdirSync(dirname(out), { recursive: true });
  const staged = join(dirname(out), `.${basename(out)}.tmp`);
  writeFileSync(staged, archive);
  renameSync(staged, out);
  return { out, tag, size: archive.length, sha256: sha256(archive), layerSize: layerTar.length, labels };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
  const built = buildImage({ binary: opt('--binary', join(root, 'dist', 'hsm-driver-linux-x64')), out: opt('--out', join(root, 'dist', 'hsm-driver-oci.tar')) });
  const mb = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  console.log(`built ${built.out} (${built.tag}; ${mb(built.size)}, ${mb(built.layerSize)} unpacked)\nsha256: ${built.sha256}`);
}
