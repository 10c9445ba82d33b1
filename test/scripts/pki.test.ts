// scripts/pki.sh: the runbook's certificates (roles, extensions, chains, file modes), checked
// with the openssl command line and node's X509Certificate, and that a second run keeps them.
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { makePki, root } from './helpers.js';

const pki = makePki('driver-a', 'driver-b');
afterAll(() => pki.remove());

const cert = (name: string) => new X509Certificate(pki.read(name));
const text = (name: string) => execFileSync('openssl', ['x509', '-in', pki.file(name), '-noout', '-text'], { encoding: 'utf8' });
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

/** openssl verify of `leaf` against `ca`, with `untrusted` intermediates; true when it verifies. */
function verifies(leaf: string, ca: string, untrusted?: string, purpose?: string): boolean {
  const args = ['verify', '-CAfile', pki.file(ca), ...(untrusted ? ['-untrusted', pki.file(untrusted)] : []), ...(purpose ? ['-purpose', purpose] : []), pki.file(leaf)];
  return spawnSync('openssl', args).status === 0;
}

describe('scripts/pki.sh', () => {
  test('makes every file of the runbook, private keys 0600', () => {
    const names = readdirSync(pki.dir).sort();
    expect(names).toEqual(
      ['api-ca.key', 'api-ca.pem', 'customer-ca.csr', 'customer-ca.key', 'customer-ca.pem', 'driver-a-chain.pem', 'driver-a.key', 'driver-a.pem',
        'driver-b-chain.pem', 'driver-b.key', 'driver-b.pem', 'rogue-ca.key', 'rogue-ca.pem', 'rogue.key', 'rogue.pem', 'server.key', 'server.pem'],
    );
    for (const name of names.filter((n) => n.endsWith('.key'))) expect(statSync(pki.file(name)).mode & 0o777, name).toBe(0o600);
    for (const name of names.filter((n) => n.endsWith('.key'))) expect(pki.read(name).toString()).toMatch(/BEGIN PRIVATE KEY/);
  });

  test('the API root is a self-signed CA with EC P-256 keys', () => {
    const ca = cert('api-ca.pem');
    expect(ca.ca).toBe(true);
    expect(ca.checkIssued(ca)).toBe(true);
    expect(ca.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(verifies('api-ca.pem', 'api-ca.pem')).toBe(true);
  });

  test('the server certificate is for localhost and 127.0.0.1, serverAuth, signed by the root', () => {
    const server = cert('server.pem');
    expect(server.ca).toBe(false);
    expect(server.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(server.keyUsage).toEqual([SERVER_AUTH]);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(verifies('server.pem', 'api-ca.pem', undefined, 'sslserver')).toBe(true);
  });

  test('the customer intermediate comes from its CSR and may sign leaves only', () => {
    const intermediate = cert('customer-ca.pem');
    expect(intermediate.ca).toBe(true);
    expect(intermediate.checkIssued(cert('api-ca.pem'))).toBe(true);
    expect(text('customer-ca.pem')).toMatch(/CA:TRUE, pathlen:0/);
    expect(text('customer-ca.pem')).toMatch(/Key Usage: critical\s+Certificate Sign/);
    const csrKey = execFileSync('openssl', ['req', '-in', pki.file('customer-ca.csr'), '-noout', '-pubkey'], { encoding: 'utf8' });
    expect(intermediate.publicKey.export({ type: 'spki', format: 'pem' })).toBe(csrKey);
  });

  test.each(['driver-a', 'driver-b'])('%s: clientAuth leaf under the intermediate, chain file leaf then intermediate', (name) => {
    const leaf = cert(`${name}.pem`);
    expect(leaf.subject).toMatch(new RegExp(`CN=${name}$`, 'm'));
    expect(leaf.keyUsage).toEqual([CLIENT_AUTH]);
    expect(leaf.checkIssued(cert('customer-ca.pem'))).toBe(true);
    const chain = readFileSync(pki.file(`${name}-chain.pem`), 'utf8');
    expect(chain).toBe(`${pki.read(`${name}.pem`).toString().trim()}\n${pki.read('customer-ca.pem').toString().trim()}\n`);
    expect(verifies(`${name}.pem`, 'api-ca.pem', 'customer-ca.pem', 'sslclient')).toBe(true);
    // What the server does with a driver that sends its leaf alone: no path to the root.
    expect(verifies(`${name}.pem`, 'api-ca.pem')).toBe(false);
  });

  test('the rogue client chains to its own CA only', () => {
    expect(verifies('rogue.pem', 'rogue-ca.pem', undefined, 'sslclient')).toBe(true);
    expect(verifies('rogue.pem', 'api-ca.pem', 'customer-ca.pem')).toBe(false);
  });

  test('a second run keeps every file; a new name adds its files only', () => {
    const before = new Map(readdirSync(pki.dir).map((n) => [n, pki.read(n).toString()]));
    execFileSync('bash', [join(root, 'scripts/pki.sh'), pki.dir, 'driver-a', 'driver-b', 'driver-c'], { stdio: 'pipe' });
    for (const [name, content] of before) expect(pki.read(name).toString(), name).toBe(content);
    expect(readdirSync(pki.dir).filter((n) => !before.has(n)).sort()).toEqual(['driver-c-chain.pem', 'driver-c.key', 'driver-c.pem']);
  });

  test('defaults to one driver named "driver"', () => {
    const other = makePki();
    try {
      expect(readdirSync(other.dir).filter((n) => n.startsWith('driver'))).toEqual(['driver-chain.pem', 'driver.key', 'driver.pem']);
      expect(new X509Certificate(other.read('driver.pem')).subject).toMatch(/CN=driver$/m);
    } finally {
      other.remove();
    }
  });

  test.each([['../escape'], ['server'], ['api-ca'], ['a b']])('refuses the driver name %j', (name) => {
    const run = spawnSync('bash', [join(root, 'scripts/pki.sh'), pki.dir, name], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/pki\.sh: (bad|reserved) driver name|reserved name/);
  });
});
