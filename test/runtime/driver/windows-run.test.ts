// `hsm-driver run` as the Windows exe under Wine: it polls the reference job server (on Linux)
// over mutual TLS and answers keygen, sign and health jobs through the PKCS#11 bridge to
// SoftHSM; the answers are checked on the Linux side.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startJobServer, type JobServer } from '../../../scripts/job-server.js';
import { makePki, serverTls, type Pki } from '../../scripts/helpers.js';
import { tokenEnv, tokenPin } from '../../support/cli.js';
import { opensslVerifyRaw, opensslVerifyRsa } from '../../support/openssl.js';
import { startUnderWine, wineMissing, windowsBuild, winPath, type WineProcess } from '../../support/wine.js';

const missing = wineMissing();

describe.skipIf(missing)(`hsm-driver-win-x64.exe run under Wine${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let pki: Pki;
  let server: JobServer;
  let driver: WineProcess | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'hsm-winrun-'));
    pki = makePki('driver');
    server = await startJobServer({ ...serverTls(pki), leaseSeconds: 60 });
  });
  afterAll(async () => {
    driver?.kill();
    await driver?.exited;
    await server?.close();
    pki?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  test('answers keygen, sign and health jobs over mTLS; signatures verify on Linux', async () => {
    const { exe, prefix, bridge } = windowsBuild();
    const t = tokenEnv('good');
    driver = startUnderWine(
      exe,
      [
        'run',
        '--proxy-addr', server.proxyAddr,
        '--client-cert', winPath(pki.file('driver-chain.pem')),
        '--client-key', winPath(pki.file('driver.key')),
        '--ca-cert', winPath(pki.file('api-ca.pem')),
        '--sqlite-path', winPath(join(dir, 'keys.db')),
        '--pkcs11-module', winPath(bridge),
        '--poll-wait', '2',
        '--backoff-max', '1',
      ],
      { prefix, cwd: dir, env: { SOFTHSM2_CONF: t.SOFTHSM2_CONF, TOKEN_LABEL: t.TOKEN_LABEL, MASTER_KEY_LABEL: t.MASTER_KEY_LABEL, USER_PIN: tokenPin('good') }, timeoutMs: 300_000 },
    );
    const wait = (id: string) => server.waitForCompletion(id, 40_000).catch((err: Error) => Promise.reject(new Error(`${err.message}\n${driver!.stderr().slice(-3000)}`)));
    // Jobs run in parallel: the keys exist before the signs are queued.
    const [k1, k2] = (await Promise.all(
      [server.enqueue('keygen', { keyId: 'win.run.ec', algorithm: 'ecdsa-secp256k1' }), server.enqueue('keygen', { keyId: 'win.run.rsa', algorithm: 'rsa-2048' })].map(wait),
    )) as Array<{ result: Record<string, any>; answers: Array<{ by: string }> }>;
    const digest = Buffer.alloc(32, 0x5a);
    const message = Buffer.from('signed by the Windows exe');
    const [s1, s2, h] = (await Promise.all(
      [
        server.enqueue('sign', { keyId: 'win.run.ec', data: digest.toString('hex'), encoding: 'digest' }),
        server.enqueue('sign', { keyId: 'win.run.rsa', data: message.toString('hex'), encoding: 'message', hash: 'sha256', padding: 'pss' }),
        server.enqueue('health', {}),
      ].map(wait),
    )) as Array<{ result: Record<string, any>; answers: Array<{ by: string }> }>;
    expect(opensslVerifyRaw(Buffer.from(k1!.result.publicKeyDer, 'base64'), digest, Buffer.from(s1!.result.der, 'hex'))).toBe(true);
    expect(opensslVerifyRsa(Buffer.from(k2!.result.publicKeyDer, 'base64'), message, Buffer.from(s2!.result.signature, 'hex'), 'sha256', 'pss')).toBe(true);
    expect(h!.result).toMatchObject({ ok: true, hsm: { ok: true, tokenLabel: t.TOKEN_LABEL }, masterKey: { ok: true }, database: { ok: true, kind: 'sqlite', keys: 2 } });
    // Answered over the driver's own client certificate.
    expect([k1, k2, s1, s2, h].every((j) => j!.answers.length === 1 && j!.answers[0]!.by === 'driver')).toBe(true);
  });
});
