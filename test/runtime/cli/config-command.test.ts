// `config check` and `config init`: the effective configuration with sources and no secrets,
// and one line, non-zero exit, for a world-readable PIN file, an expired client certificate and
// a key that does not match its certificate.
import { X509Certificate } from 'node:crypto';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configCheck } from '../../../runtime/cli/config-command.js';
import { makePki, type Pki } from '../../scripts/helpers.js';
import { tokenEnv, tokenPin, useCli } from '../../support/cli.js';

const cli = useCli();
let pki: Pki;
beforeAll(() => {
  pki = makePki('driver', 'other');
});
afterAll(() => pki?.remove());

const tls = () => ['--client-cert', pki.file('driver-chain.pem'), '--client-key', pki.file('driver.key'), '--ca-cert', pki.file('api-ca.pem'), '--proxy-addr', 'api.example:8443'];
const problems = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('problem: '));

describe('config check', () => {
  it('prints each value with its source, never the PIN, and passes on a sound setup', () => {
    const config = cli.path('check.yaml');
    writeFileSync(config, 'sessions: 2\nlog-level: warn\npostgres-url: postgres://hsm:s3cret@db.example/hsm\n');
    const res = cli.run(['config', 'check', '--config', config, ...tls(), '--log-level', 'info'], { env: { HSM_SESSIONS: '3' } });
    expect(res.status, res.stdout).toBe(0);
    expect(res.stdout).toContain('  sessions = 3 (env)\n');
    expect(res.stdout).toContain('  log-level = info (flag)\n');
    expect(res.stdout).toContain('  postgres-url = postgres://hsm:****@db.example/hsm (file)\n');
    expect(res.stdout).toContain(`  token: "${tokenEnv('good').TOKEN_LABEL}"`);
    expect(res.stdout).toMatch(/config check: ok\n$/);
    expect(res.stdout + res.stderr).not.toContain('s3cret');
    expect(res.stdout + res.stderr).not.toContain(tokenPin('good'));
  });

  it('a world-readable PIN file: one problem line, exit 1', () => {
    const pin = cli.path('open.pin');
    copyFileSync(tokenEnv('good').USER_PIN_FILE!, pin);
    chmodSync(pin, 0o644);
    const res = cli.run(['config', 'check', ...tls()], { env: { USER_PIN_FILE: pin } });
    expect(res.status).toBe(1);
    expect(problems(res.stdout)).toEqual([expect.stringMatching(/^problem: PIN file .*open\.pin is open to others.*chmod 600 it$/)]);
  });

  it('a key that does not match its certificate: one problem line, exit 1', () => {
    const res = cli.run(['config', 'check', ...tls(), '--client-key', pki.file('other.key')]);
    expect(res.status).toBe(1);
    expect(problems(res.stdout)).toEqual([expect.stringMatching(/^problem: client key .*other\.key does not match the certificate/)]);
  });

  it('an expired client certificate is a problem; one expiring within 30 days a warning', () => {
    const env = { ...tokenEnv('good') } as NodeJS.ProcessEnv;
    const argv = { 'client-cert': pki.file('driver-chain.pem'), 'client-key': pki.file('driver.key'), 'ca-cert': pki.file('api-ca.pem') };
    const leaf = readFileSync(pki.file('driver.pem'), 'utf8');
    const validTo = new Date(new X509Certificate(leaf).validTo);
    const later = configCheck(argv, env, new Date(validTo.getTime() + 86_400_000));
    expect(later.ok).toBe(false);
    expect(later.lines.filter((l) => l.startsWith('problem: '))).toEqual([expect.stringMatching(/^problem: client certificate .*driver-chain\.pem expired on /)]);
    const soon = configCheck(argv, env, new Date(validTo.getTime() - 10 * 86_400_000));
    expect(soon.ok).toBe(true);
    expect(soon.lines).toContainEqual(expect.stringMatching(/^warning: client certificate .* expires in \d+ days/));
  });
});

describe('config init', () => {
  it('writes a commented example that config check reads back, and never overwrites', () => {
    const out = cli.path('example.yaml');
    expect(cli.run(['config', 'init', '--out', out]).stdout).toBe(`wrote ${out}\n`);
    expect(readFileSync(out, 'utf8')).toMatch(/^# hsm-driver configuration/);
    expect(readFileSync(out, 'utf8')).toContain('# proxy-addr: ');
    expect(cli.run(['config', 'check', '--config', out, ...tls()]).status).toBe(0);
    const again = cli.run(['config', 'init', '--out', out]);
    expect(again.status).toBe(2);
    expect(again.stderr).toBe(`hsm-driver: ${out} exists; not overwriting it\n`);
  });
});
