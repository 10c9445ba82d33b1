// The container image (build/oci.mjs → hsm-driver-oci.tar) run for real under podman + runc: the
// README's "Run in a container" blocks in one shell, then what the README only describes: a
// plain run, a fresh addon cache on an exec tmpfs, the noexec defect, a module missing a library.
import { execFileSync, execSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer, type JobServer, type JobView } from '../../scripts/job-server.js';
import { opensslVerifyRaw } from '../support/openssl.js';
import { BlockShell, Podman, podmanMissing } from '../support/podman.js';
import { builtBinary } from './sea.js';

const root = join(import.meta.dirname, '..', '..');
const VERSION = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `hsm-driver:${VERSION}`;
const missing = podmanMissing();

/** build/oci.mjs from the binary global-setup built; returns the archive's sha256. */
function buildArchive(out: string): string {
  const printed = execFileSync(process.execPath, [join(root, 'build/oci.mjs'), '--binary', builtBinary(), '--out', out], { encoding: 'utf8' });
  const sha = createHash('sha256').update(readFileSync(out)).digest('hex');
  expect(printed).toContain(`sha256: ${sha}`);
  return sha;
}

const member = (archive: string, name: string) => execFileSync('tar', ['-xOf', archive, name], { maxBuffer: 256 * 2 ** 20 });
const json = (archive: string, name: string) => JSON.parse(member(archive, name).toString('utf8'));

/** The ```sh blocks of README's "Run in a container", in order. */
function readmeBlocks(): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = /^## Run in a container\n([\s\S]*?)^## /m.exec(readme)?.[1];
  if (!section) throw new Error('README.md has no "## Run in a container" section');
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** The one-line JSON answers a block printed, in order. */
const answers = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { output?: Record<string, any>; error?: unknown });

let dir = '';
let archive = '';
let firstSha = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hsm-container-'));
  archive = join(dir, 'dist', 'hsm-driver-oci.tar');
  firstSha = buildArchive(archive);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the image archive', () => {
  test('two builds are byte-identical; one tar is both an OCI layout and a docker-archive', () => {
    expect(buildArchive(join(dir, 'again.tar'))).toBe(firstSha);
    expect(json(archive, 'oci-layout')).toEqual({ imageLayoutVersion: '1.0.0' });
    const index = json(archive, 'index.json');
    const manifest = json(archive, `blobs/sha256/${index.manifests[0].digest.slice(7)}`);
    const [docker] = json(archive, 'manifest.json');
    expect(docker.RepoTags).toEqual([IMAGE]);
    expect(docker.Config).toBe(`blobs/sha256/${manifest.config.digest.slice(7)}`);
    expect(docker.Layers).toEqual([`blobs/sha256/${manifest.layers[0].digest.slice(7)}`]);
    const config = json(archive, docker.Config);
    expect(config.config).toMatchObject({ User: '10001:10001', Entrypoint: ['/usr/local/bin/hsm-driver'], Cmd: ['run'] });
    expect(config.config.Labels).toMatchObject({ 'org.opencontainers.image.version': VERSION, 'org.opencontainers.image.licenses': 'Apache-2.0' });
    expect(Object.keys(config.config.Labels)).toEqual(expect.arrayContaining(['org.opencontainers.image.revision', 'hsm-driver.debian.libc6', 'hsm-driver.debian.libssl3']));

    // The layer: one owner per file, one mtime for all, every library the binary's ldd names.
    const layer = execSync(`tar -xOf ${archive} ${docker.Layers[0]} | tar -tvzf -`, { encoding: 'utf8', maxBuffer: 2 ** 20 });
    const entries = new Map(layer.trim().split('\n').map((l) => [l.split(/\s+/)[5]!, l]));
    expect(entries.get('usr/local/bin/hsm-driver')).toMatch(/^-rwxr-xr-x 0\/0 /);
    expect(entries.get('home/hsm-driver/.cache/hsm-driver/')).toMatch(/^drwx------ 10001\/10001 /);
    expect([...entries.keys()].some((p) => /^home\/hsm-driver\/\.cache\/hsm-driver\/pkcs11-[0-9a-f]{64}\.node$/.test(p))).toBe(true);
    expect(entries.get('tmp/')).toMatch(/^drwxrwxrwt 0\/0 /);
    expect(new Set(layer.trim().split('\n').map((l) => l.split(/\s+/).slice(3, 5).join(' '))).size).toBe(1);
    const needed = [...execFileSync('ldd', [builtBinary()], { encoding: 'utf8' }).matchAll(/^\s*(\S+\.so[.\d]*)/gm)].map((m) => m[1]!.split('/').pop()!);
    for (const lib of [...needed.filter((n) => !n.startsWith('linux-vdso')), 'libssl.so.3', 'libcrypto.so.3']) {
      expect([...entries.keys()].some((p) => p.startsWith('usr/lib/x86_64-linux-gnu/') && p.endsWith(`/${lib}`)), lib).toBe(true);
    }
  });
});

describe.skipIf(missing)(`the image under podman${missing ? ` (skipped: ${missing})` : ''}`, () => {
  const blocks = readmeBlocks();
  let work = '';
  let podman: Podman;
  let shell: BlockShell;
  let server: JobServer | undefined;
  let k1: { publicKeyDer: string } | undefined;
  const wait = (id: string) => server!.waitForCompletion(id, 40_000) as Promise<JobView & { result: Record<string, any> }>;

  beforeAll(() => {
    // The reader's checkout, as the README's commands see it: dist/ and scripts/ in the cwd.
    work = join(dir, 'checkout');
    mkdirSync(join(work, 'dist'), { recursive: true });
    symlinkSync(archive, join(work, 'dist', 'hsm-driver-oci.tar'));
    symlinkSync(join(root, 'scripts'), join(work, 'scripts'));
    podman = new Podman(join(dir, 'podman'));
    // Only what a reader's shell would hold: not the test tokens' variables.
    shell = new BlockShell(work, { PATH: process.env.PATH!, HOME: work, LANG: 'C.UTF-8' }, podman.bashFunction());
  });
  afterAll(async () => {
    shell?.close();
    podman?.run(['rm', '--force', '--all']);
    podman?.reset();
    await server?.close();
  });

  test('README has the five blocks this test runs', () => {
    expect(blocks).toHaveLength(5);
  });

  test('README: load the archive; version', async () => {
    const { stdout } = await shell.exec(blocks[0]!);
    expect(stdout).toContain(`Loaded image: docker.io/library/${IMAGE}\n`);
    expect(stdout).toMatch(new RegExp(`^hsm-driver ${VERSION.replace(/\./g, '\\.')}\n[\\s\\S]*^addon: /home/hsm-driver/\\.cache/hsm-driver/pkcs11-[0-9a-f]{64}\\.node$`, 'm'));
    const [inspect] = JSON.parse(podman.run(['image', 'inspect', IMAGE]).stdout);
    expect(inspect.Config).toMatchObject({ User: '10001:10001', Cmd: ['run'] });
  });

  test('README: hsm test, keygen and sign against a SoftHSM token mounted in, the PIN as a file; openssl verifies', async () => {
    const { stdout } = await shell.exec(blocks[1]!);
    expect(stdout).toContain('master key posture: ok');
    for (const alg of ['ecdsa-secp256k1', 'ecdsa-p256', 'ecdsa-p384', 'eddsa-ed25519', 'rsa-2048']) expect(stdout).toMatch(new RegExp(`^${alg}\\s+\\w+\\s+ok\\b`, 'm'));
    const [keygen, sign] = answers(stdout);
    k1 = keygen!.output as { publicKeyDer: string };
    const digest = Buffer.from('9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 'hex');
    expect(digest).toEqual(createHash('sha256').update('test').digest());
    expect(opensslVerifyRaw(Buffer.from(k1.publicKeyDer, 'base64'), digest, Buffer.from(sign!.output!.der, 'hex'))).toBe(true);
  });

  test('README: run on the host network answers jobs (read-only root, no capabilities), /readyz, SIGTERM exits 0', async () => {
    await shell.exec(blocks[2]!);
    const pki = (name: string) => readFileSync(join(work, 'trial', 'pki', name));
    server = await startJobServer({ cert: pki('server.pem'), key: pki('server.key'), ca: pki('api-ca.pem'), leaseSeconds: 60 });
    const metrics = `127.0.0.1:${await freePort()}`;
    await shell.exec(`export PROXY_ADDR=${server.proxyAddr} METRICS_ADDR=${metrics}`);
    await shell.exec(blocks[3]!);
    const logs = () => podman.run(['logs', 'hsm-driver']).stderr.slice(-3000);
    try {
      const message = Buffer.from('signed in a container');
      const [k2, s1, h] = await Promise.all([
        wait(server.enqueue('keygen', { keyId: 'k2', algorithm: 'ecdsa-secp256k1' })),
        wait(server.enqueue('sign', { keyId: 'k1', data: createHash('sha256').update(message).digest('hex'), encoding: 'digest' })),
        wait(server.enqueue('health', {})),
      ]);
      expect(k2!.result.publicKeyDer).toBeTypeOf('string');
      // k1 came from the one-shot keygen above: the keys volume outlives its container.
      expect(opensslVerifyRaw(Buffer.from(k1!.publicKeyDer, 'base64'), createHash('sha256').update(message).digest(), Buffer.from(s1!.result.der, 'hex'))).toBe(true);
      expect(h!.result).toMatchObject({ ok: true, hsm: { ok: true }, masterKey: { ok: true }, database: { ok: true, kind: 'sqlite' } });
      const ready = await fetch(`http://${metrics}/readyz`);
      expect([ready.status, await ready.text()]).toEqual([200, 'ready\n']);
    } catch (err) {
      throw new Error(`${(err as Error).message}\ndriver log:\n${logs()}`);
    }
    const { stdout } = await shell.exec(blocks[4]!);
    expect(stdout).toBe('0\n');
  }, 150_000);

  test('run without hardening, and with a fresh addon cache on an exec tmpfs (read-only, no capabilities)', async () => {
    const trial = join(work, 'trial');
    const common = [
      '--env-file', join(trial, 'driver.env'), '-v', '/usr/lib/softhsm/libsofthsm2.so:/opt/hsm/libsofthsm2.so:ro', '-v', `${trial}:/softhsm`,
      '-v', `${trial}/user.pin:/run/secrets/user-pin:ro`, '-v', 'hsm-keys:/var/lib/hsm-driver', '-v', `${trial}/pki:/pki:ro`,
      '-e', `PROXY_ADDR=${server!.proxyAddr}`, '-e', 'CLIENT_CERT=/pki/driver-chain.pem', '-e', 'CLIENT_KEY=/pki/driver.key', '-e', 'CA_CERT=/pki/api-ca.pem',
    ];
    const tmpfsCache = ['--read-only', '--cap-drop=ALL', '--tmpfs', '/cache:rw,exec,nosuid,nodev,notmpcopyup', '-e', 'XDG_CACHE_HOME=/cache'];
    expect(podman.run(['run', '--rm', ...tmpfsCache, IMAGE, 'version']).stdout).toMatch(/^addon: \/cache\/hsm-driver\/pkcs11-[0-9a-f]{64}\.node$/m);
    for (const [name, extra] of [['plain', []], ['tmpfs-cache', tmpfsCache]] as const) {
      const started = await podman.runAsync(['run', '-d', '--name', name, '--network', 'host', ...extra, ...common, IMAGE]);
      expect(started.status, started.stderr).toBe(0);
      const digest = createHash('sha256').update(name).digest();
      const job = await wait(server!.enqueue('sign', { keyId: 'k1', data: digest.toString('hex'), encoding: 'digest' })).catch(async (err: Error) => {
        throw new Error(`${name}: ${err.message}\n${(await podman.runAsync(['logs', name])).stderr.slice(-3000)}`);
      });
      expect(opensslVerifyRaw(Buffer.from(k1!.publicKeyDer, 'base64'), digest, Buffer.from(job.result.der, 'hex'))).toBe(true);
      expect((await podman.runAsync(['stop', '--time', '45', name])).status).toBe(0);
      expect((await podman.runAsync(['inspect', '--format', '{{.State.ExitCode}}', name])).stdout).toBe('0\n');
      await podman.runAsync(['rm', name]);
    }
  }, 150_000);

  test('settings from a mounted config file (a ConfigMap), with only the file\'s path in the environment', () => {
    const trial = join(work, 'trial');
    const config = join(work, 'config.yaml');
    writeFileSync(config, ['pkcs11-module: /opt/hsm/libsofthsm2.so', 'token-label: hsm-driver-dev', 'pin-file: /run/secrets/user-pin', 'resident-algorithms: eddsa-ed25519', ''].join('\n'));
    chmodSync(config, 0o644); // settings, not secrets: readable like a ConfigMap
    const res = podman.run([
      'run', '--rm', '--read-only', '--cap-drop=ALL', '-e', 'SOFTHSM2_CONF=/softhsm/container.conf', '-e', 'CONFIG_FILE=/etc/hsm-driver/config.yaml',
      '-v', `${config}:/etc/hsm-driver/config.yaml:ro`, '-v', '/usr/lib/softhsm/libsofthsm2.so:/opt/hsm/libsofthsm2.so:ro', '-v', `${trial}:/softhsm`,
      '-v', `${trial}/user.pin:/run/secrets/user-pin:ro`, '-v', 'hsm-keys:/var/lib/hsm-driver', IMAGE, 'health', '--input', '{}',
    ]);
    expect(res.status, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout).output).toMatchObject({ ok: true, hsm: { ok: true, tokenLabel: 'hsm-driver-dev' }, database: { ok: true, kind: 'sqlite' } });
  });

  test('a noexec cache (Docker\'s default --tmpfs): version exits 1 with one line naming XDG_CACHE_HOME', () => {
    const res = podman.run(['run', '--rm', '--read-only', '--tmpfs', '/cache:rw,noexec,nosuid,nodev', '-e', 'XDG_CACHE_HOME=/cache', IMAGE, 'version']);
    expect(res.status).toBe(1);
    const lines = `${res.stdout}${res.stderr}`.split('\n').filter((l) => l.includes('XDG_CACHE_HOME'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^addon: unavailable: .*failed to map segment.*noexec.*set XDG_CACHE_HOME to a directory that allows executables$/);
  });

  test('a module whose library is missing from the image: one line naming it and LD_LIBRARY_PATH', () => {
    const module = '/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so'; // needs libopensc.so.8, which the image lacks
    const res = podman.run(['run', '--rm', '-v', `${module}:/opt/hsm/opensc-pkcs11.so:ro`, '-e', 'PKCS11_MODULE=/opt/hsm/opensc-pkcs11.so', IMAGE, 'hsm', 'list']);
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/^hsm-driver: cannot load PKCS#11 module \/opt\/hsm\/opensc-pkcs11\.so: libopensc\.so\.8: cannot open shared object file: No such file or directory \(the module needs libopensc\.so\.8, .*LD_LIBRARY_PATH.*\)\n$/);
  });
});
