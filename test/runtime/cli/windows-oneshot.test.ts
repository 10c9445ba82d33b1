// The Windows exe's one-shot keygen and sign under Wine, against the SoftHSM test token through
// the PKCS#11 bridge DLL (scripts/wine/pkcs11-bridge), for every algorithm, on SQLite and on
// PostgreSQL; each signature checked on the Linux side by openssl. And a module DLL that is
// missing or is no DLL at all: one line, exit 2.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_ALGORITHMS, tokenEnv, tokenPin, type ProtocolAlgorithm } from '../../support/cli.js';
import { opensslVerifyRaw, opensslVerifyRsa } from '../../support/openssl.js';
import { usePostgresDatabase } from '../../support/postgres.js';
import { runUnderWine, wineMissing, windowsBuild, winPath } from '../../support/wine.js';

const missing = wineMissing();
const postgresUrl = usePostgresDatabase();

/** What to sign per algorithm, and how openssl checks it against the returned SPKI. */
function signAndCheck(algorithm: ProtocolAlgorithm): { input: Record<string, string>; verify: (spki: Buffer, out: Record<string, string>) => boolean } {
  const data = randomBytes(100);
  if (algorithm.startsWith('ecdsa-')) {
    const digest = createHash(algorithm === 'ecdsa-p384' ? 'sha384' : 'sha256').update(data).digest();
    return { input: { data: digest.toString('hex'), encoding: 'digest' }, verify: (spki, out) => opensslVerifyRaw(spki, digest, Buffer.from(out.der!, 'hex')) };
  }
  if (algorithm === 'eddsa-ed25519') {
    return { input: { data: data.toString('hex'), encoding: 'message' }, verify: (spki, out) => opensslVerifyRaw(spki, data, Buffer.from(out.signature!, 'hex'), true) };
  }
  return {
    input: { data: data.toString('hex'), encoding: 'message', hash: 'sha256', padding: 'pss' },
    verify: (spki, out) => opensslVerifyRsa(spki, data, Buffer.from(out.signature!, 'hex'), 'sha256', 'pss'),
  };
}

describe.skipIf(missing)(`the Windows exe against SoftHSM through the bridge${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hsm-winjob-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const token = () => {
    const t = tokenEnv('good');
    return {
      PKCS11_MODULE: winPath(windowsBuild().bridge),
      SOFTHSM2_CONF: t.SOFTHSM2_CONF, // read by the bridge's Linux side
      TOKEN_LABEL: t.TOKEN_LABEL,
      MASTER_KEY_LABEL: t.MASTER_KEY_LABEL,
      USER_PIN: tokenPin('good'),
      RESIDENT_ALGORITHMS: 'eddsa-ed25519',
    };
  };
  const job = async (kind: string, input: unknown, env: Record<string, string>) => {
    const { exe, prefix } = windowsBuild();
    const res = await runUnderWine(exe, [kind, '--input', JSON.stringify(input)], { prefix, cwd: dir, env: { ...token(), ...env } });
    return { ...res, answer: res.stdout ? (JSON.parse(res.stdout) as { output?: Record<string, string>; error?: { code: string } }) : undefined };
  };

  describe.each([
    ['SQLite', () => ({ SQLITE_PATH: winPath(join(dir, 'keys.db')) })],
    ['PostgreSQL', () => ({ POSTGRES_URL: postgresUrl() })],
  ])('on %s', (_store, storeEnv) => {
    it.each(PROTOCOL_ALGORITHMS)('%s: keygen → sign → openssl verifies', async (algorithm) => {
      const keyId = `win-${algorithm}-${randomBytes(4).toString('hex')}`;
      const made = await job('keygen', { keyId, algorithm }, storeEnv());
      expect(made.status, made.stderr).toBe(0);
      const spki = Buffer.from(made.answer!.output!.publicKeyDer!, 'base64');
      const { input, verify } = signAndCheck(algorithm);
      const signed = await job('sign', { keyId, ...input }, storeEnv());
      expect(signed.status, signed.stderr).toBe(0);
      expect(verify(spki, signed.answer!.output!)).toBe(true);
      // The key is stored: the same keygen returns the same public key.
      const again = await job('keygen', { keyId, algorithm }, storeEnv());
      expect(again.answer!.output!.publicKeyDer).toBe(made.answer!.output!.publicKeyDer);
    });
  });

  it('takes the PIN from a file only it may read, and refuses one everyone may read', async () => {
    const pinFile = join(dir, 'user.pin');
    writeFileSync(pinFile, tokenPin('good'), { mode: 0o600 });
    const env = { USER_PIN: '', USER_PIN_FILE: winPath(pinFile), SQLITE_PATH: winPath(join(dir, 'pin.db')) };
    expect((await job('health', {}, env)).answer?.output).toMatchObject({ ok: true, hsm: { ok: true } });
    chmodSync(pinFile, 0o644); // Wine shows this as Everyone: read
    const open = await job('health', {}, env);
    expect(open.status).toBe(2);
    expect(open.stderr).toMatch(/^hsm-driver: PIN file .*user\.pin may be read or changed by S-1-1-0; let only this account and Administrators read it/);
    expect(open.stderr).not.toContain(tokenPin('good'));
  });

  it('a module DLL that does not exist, or is no DLL, is one line and exit 2', async () => {
    const notDll = join(dir, 'not-a.dll');
    writeFileSync(notDll, 'MZ this is not a DLL');
    const health = (module: string) => job('health', {}, { PKCS11_MODULE: module, SQLITE_PATH: winPath(join(dir, 'h.db')) });
    const absent = await health('C:\\nowhere\\vendor-pkcs11.dll');
    expect(absent.status).toBe(2);
    expect(absent.stdout).toBe('');
    expect(absent.stderr).toMatch(/^hsm-driver: cannot load PKCS#11 module C:\\nowhere\\vendor-pkcs11\.dll: Win32 error 126 \(the DLL, or a DLL it needs, was not found.*\)\n$/);
    const junk = await health(winPath(notDll));
    expect(junk.status).toBe(2);
    expect(junk.stderr).toMatch(/^hsm-driver: cannot load PKCS#11 module .*not-a\.dll: Win32 error \d+.*\n$/);
    expect(junk.stderr.split('\n')).toHaveLength(2);
  });
});
