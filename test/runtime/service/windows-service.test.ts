// The Windows service under Wine's Service Control Manager: `service install` (PIN file with
// its ACL, nothing secret in the registry) → start → RUNNING → jobs answered → stop while jobs
// are in flight (the drain finishes them; STOP_PENDING, then STOPPED with exit code 0) →
// uninstall. The exe sits in a folder with a space in its name, as under Program Files.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer, type JobServer } from '../../../scripts/job-server.js';
import { makePki, serverTls, type Pki } from '../../scripts/helpers.js';
import { tokenEnv, tokenPin } from '../../support/cli.js';
import { opensslVerifyRaw } from '../../support/openssl.js';
import { newPrefix, persistentWineserver, runUnderWine, wineMissing, windowsBuild, winPath } from '../../support/wine.js';

const missing = wineMissing();
const NAME = 'hsm-driver-test';

describe.skipIf(missing)(`the Windows service under Wine's SCM${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let prefix = '';
  let exe = '';
  let pki: Pki;
  let server: JobServer;
  let stopWineserver = () => {};
  const service = (args: string[], env: Record<string, string> = {}) => runUnderWine(exe, ['service', ...args, '--name', NAME], { prefix, cwd: dir, env });
  const programData = () => join(prefix, 'drive_c/ProgramData/hsm-driver');

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hsm-winsvc-'));
    // Services live as long as their wineserver: this file keeps one of its own, in its own prefix.
    prefix = newPrefix(join(dir, 'prefix'));
    stopWineserver = persistentWineserver(prefix);
    mkdirSync(join(dir, 'Program Files', 'hsm driver'), { recursive: true });
    exe = join(dir, 'Program Files', 'hsm driver', 'hsm-driver.exe');
    copyFileSync(windowsBuild().exe, exe);
    pki = makePki('driver');
    server = await startJobServer({ ...serverTls(pki), leaseSeconds: 60 });
  }, 120_000);
  afterAll(async () => {
    stopWineserver();
    await server?.close();
    pki?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  test('install → start → RUNNING → jobs → stop drains the jobs in flight → STOPPED, exit 0 → uninstall', { timeout: 180_000 }, async () => {
    const t = tokenEnv('good');
    const pin = tokenPin('good');
    // The bridge's Linux side finds the token through SOFTHSM2_CONF; the SCM's services inherit it.
    const token = { SOFTHSM2_CONF: t.SOFTHSM2_CONF! };
    const install = await service(
      [
        'install',
        '--proxy-addr', server.proxyAddr,
        '--client-cert', winPath(pki.file('driver-chain.pem')),
        '--client-key', winPath(pki.file('driver.key')),
        '--ca-cert', winPath(pki.file('api-ca.pem')),
        '--pkcs11-module', winPath(windowsBuild().bridge),
        '--token-label', t.TOKEN_LABEL!,
        '--master-key-label', t.MASTER_KEY_LABEL!,
        '--poll-wait', '2',
        '--drain-timeout', '30',
      ],
      { ...token, USER_PIN: pin },
    );
    expect(install.status, install.stderr).toBe(0);
    expect(install.stdout).toContain(`registered service ${NAME}: automatic start, runs as NT AUTHORITY\\LocalService`);
    // The PIN is in its file, and nowhere in the registry (where the command line is kept).
    expect(readFileSync(join(programData(), NAME, 'user.pin'), 'utf8')).toBe(pin);
    const registry = await runUnderWine('reg', ['query', `HKLM\\System\\CurrentControlSet\\Services\\${NAME}`, '/s'], { prefix, cwd: dir });
    const imagePath = registry.stdout.split('\n').find((l) => l.includes('ImagePath'));
    expect(imagePath).toContain(`"${winPath(exe)}" service run --name ${NAME} --pkcs11-module`); // quoted: the space survives
    expect(imagePath).toContain(`--pin-file C:\\ProgramData\\hsm-driver\\${NAME}\\user.pin`);
    expect(registry.stdout).not.toContain(pin);
    expect((await service(['status'])).stdout).toMatch(/^STOPPED\n/);

    const start = await service(['start'], token);
    expect(start.status, start.stderr).toBe(0);
    let status = '';
    for (let i = 0; i < 80 && !status.startsWith('RUNNING'); i++) {
      status = (await service(['status'])).stdout;
      if (!status.startsWith('RUNNING')) await new Promise((r) => setTimeout(r, 250));
    }
    expect(status).toMatch(/^RUNNING\npid \d+\n$/);

    const keygen = await server.waitForCompletion(server.enqueue('keygen', { keyId: 'svc.k1', algorithm: 'ecdsa-p256' }), 30_000);
    const digest = Buffer.alloc(32, 7);
    const sign = await server.waitForCompletion(server.enqueue('sign', { keyId: 'svc.k1', data: digest.toString('hex'), encoding: 'digest' }), 30_000);
    const out = (j: typeof keygen) => j.result as Record<string, string>;
    expect(opensslVerifyRaw(Buffer.from(out(keygen).publicKeyDer!, 'base64'), digest, Buffer.from(out(sign).der!, 'hex'))).toBe(true);

    // RSA-4096 keygens take SoftHSM a second or more: stop as soon as one is leased.
    const slow = ['svc.r1', 'svc.r2', 'svc.r3'].map((keyId) => server.enqueue('keygen', { keyId, algorithm: 'rsa-4096' }));
    for (let i = 0; i < 200 && !slow.some((id) => server.job(id)!.leases.length > 0); i++) await new Promise((r) => setTimeout(r, 20));
    const leased = slow.filter((id) => server.job(id)!.leases.length > 0);
    expect(leased.length).toBeGreaterThan(0);
    const stop = await service(['stop']);
    expect(stop.status, stop.stderr).toBe(0);
    expect(stop.stdout).toBe(`stopping ${NAME}: STOP_PENDING\nstopped ${NAME}: exit code 0\n`);
    for (const id of leased) {
      const job = server.job(id)!;
      expect(job.state, `${id} was in flight at the stop`).toBe('completed');
      expect(job.answers).toHaveLength(1);
      expect(job.result).toMatchObject({ algorithm: 'rsa-4096' });
    }
    const log = readFileSync(join(programData(), 'logs', `${NAME}.log`), 'utf8');
    const lines = log.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l.msg === 'driver state').map((l) => l.state)).toEqual(['starting', 'running', 'draining', 'stopped']);
    expect(lines.at(-1)).toMatchObject({ msg: 'service stopped', exitCode: 0 });
    expect(log).not.toContain(pin);

    const uninstall = await service(['uninstall']);
    expect(uninstall.status, uninstall.stderr).toBe(0);
    const gone = await service(['status']);
    expect(gone).toMatchObject({ status: 2, stdout: '' });
    expect(gone.stderr).toBe(`hsm-driver: no service named ${NAME} is installed (hsm-driver service install --name ${NAME})\n`);
    expect(existsSync(join(programData(), NAME, 'user.pin'))).toBe(true); // keys and PIN stay for a reinstall
  });

  test('service run outside the SCM is one line and exit 2', async () => {
    const res = await runUnderWine(exe, ['service', 'run', '--name', NAME, '--log-file', 'C:\\x.log'], { prefix, cwd: dir });
    expect(res).toMatchObject({ status: 2, stdout: '' });
    expect(res.stderr).toMatch(/^hsm-driver: service run is for the Service Control Manager \(StartServiceCtrlDispatcher: 1063\); in a console use: hsm-driver run\n$/);
  });
});
