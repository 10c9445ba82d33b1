// The start-up checks of the driver's mTLS material, on certificates made by scripts/pki.sh.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { loadClientTls } from '../../../runtime/driver/tls.js';

const dir = mkdtempSync(join(tmpdir(), 'tls-'));
const f = (name: string) => join(dir, name);
beforeAll(() => {
  execFileSync('bash', [join(import.meta.dirname, '../../../scripts/pki.sh'), dir, 'driver', 'other'], { stdio: 'ignore' });
});

describe('loadClientTls', () => {
  test('a leaf with its chain, its key and the API root load', () => {
    const tls = loadClientTls({ clientCert: f('driver-chain.pem'), clientKey: f('driver.key'), caCert: f('api-ca.pem') });
    expect(tls.leaf.subject).toMatch(/CN=driver/);
  });

  test.each([
    ['missing flag', { clientKey: 'driver.key', caCert: 'api-ca.pem' }, /client certificate is missing: set --client-cert/],
    ['unreadable file', { clientCert: 'nope.pem', clientKey: 'driver.key', caCert: 'api-ca.pem' }, /client certificate .*nope.pem cannot be read \(ENOENT\)/],
    ['key of another driver', { clientCert: 'driver-chain.pem', clientKey: 'other.key', caCert: 'api-ca.pem' }, /does not match the certificate/],
    ['a key where the certificate belongs', { clientCert: 'driver.key', clientKey: 'driver.key', caCert: 'api-ca.pem' }, /holds no PEM certificate/],
    ['no CA', { clientCert: 'driver-chain.pem', clientKey: 'driver.key' }, /CA certificate is missing: set --ca-cert/],
  ])('%s is refused with one line', (_name, paths, message) => {
    const abs = Object.fromEntries(Object.entries(paths).map(([k, v]) => [k, f(v)]));
    expect(() => loadClientTls(abs)).toThrow(message);
    try {
      loadClientTls(abs);
    } catch (err) {
      expect((err as Error).message).not.toContain('\n');
      expect((err as Error).name).toBe('ConfigError');
    }
  });

  test('an expired certificate is refused', () => {
    const later = new Date(Date.now() + 60 * 86_400_000); // pki.sh certificates live 30 days
    expect(() => loadClientTls({ clientCert: f('driver-chain.pem'), clientKey: f('driver.key'), caCert: f('api-ca.pem') }, later)).toThrow(/expired on/);
  });

  test('a corrupt certificate is refused', () => {
    writeFileSync(f('corrupt.pem'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(() => loadClientTls({ clientCert: f('corrupt.pem'), clientKey: f('driver.key'), caCert: f('api-ca.pem') })).toThrow(/does not parse/);
  });
});
