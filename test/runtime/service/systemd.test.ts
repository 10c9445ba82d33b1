// The systemd unit that `hsm-driver service install` writes: hardened, PIN as a credential,
// and accepted by systemd's own checker.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { installService, unitFile } from '../../../runtime/service/systemd.js';

const options = (dir: string) => ({
  execPath: '/usr/local/bin/hsm-driver',
  name: 'hsm-driver',
  user: 'hsm-driver',
  unitDir: join(dir, 'units'),
  configDir: join(dir, 'etc'),
  readWritePaths: ['/var/lib/softhsm/tokens'],
});

test('the unit runs the binary as its user, with the PIN as a credential and the hardening set', () => {
  const unit = unitFile(options('/x'));
  for (const line of [
    'ExecStart=/usr/local/bin/hsm-driver run',
    'User=hsm-driver',
    'LoadCredential=user-pin:/x/etc/user.pin',
    'Environment=USER_PIN_FILE=%d/user-pin',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    'ProtectHome=yes',
    'CapabilityBoundingSet=',
    'StateDirectoryMode=0700',
    'ReadWritePaths=/var/lib/softhsm/tokens',
  ]) {
    expect(unit.split('\n')).toContain(line);
  }
  expect(unit).not.toMatch(/USER_PIN=/);
  expect(unit).not.toMatch(/^MemoryDenyWriteExecute/m); // V8's JIT would die under it
});

test('install writes the unit and an env template, keeps an edited env file, and systemd accepts the unit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'service-'));
  const o = { ...options(dir), execPath: '/usr/bin/true' };
  const said = installService(o, false);
  const unitPath = join(o.unitDir, 'hsm-driver.service');
  expect(said).toContain(`wrote ${unitPath}`);
  expect(statSync(unitPath).mode & 0o777).toBe(0o644);
  const env = join(o.configDir, 'hsm-driver.env');
  expect(statSync(env).mode & 0o777).toBe(0o640);
  expect(readFileSync(env, 'utf8')).not.toMatch(/PIN=/);
  writeFileSync(env, 'PROXY_ADDR=edited:1\n');
  installService(o, false);
  expect(readFileSync(env, 'utf8')).toBe('PROXY_ADDR=edited:1\n');

  if (!existsSync('/usr/bin/systemd-analyze')) return; // checked where systemd is installed
  writeFileSync(join(o.configDir, 'user.pin'), '1234', { mode: 0o600 });
  const check = spawnSync('systemd-analyze', ['verify', unitPath], { encoding: 'utf8' });
  // verify also complains about unrelated units on the host; only lines naming ours count.
  const ours = `${check.stdout}${check.stderr}`.split('\n').filter((l) => l.includes('hsm-driver.service'));
  expect(ours).toEqual([]);
});

test('bad options are refused with one line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'service-'));
  expect(() => installService({ ...options(dir), execPath: 'relative/hsm-driver' }, false)).toThrow(/--exec-path must be absolute/);
  expect(() => installService({ ...options(dir), user: 'Bad User' }, false)).toThrow(/not a valid user name/);
});
