// Configuration rules, without an HSM: flags over environment, the PKCS#11 module choice, how the
// PIN is read and guarded, and the checks on algorithm lists, wrap mechanisms and pool size.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseResidentAlgorithms, readPin, resolveHsmConfig, resolveModule, resolveStoreOptions, settingsFrom, settingsWithSources } from '../../runtime/config.js';
import { ConfigError } from '../../runtime/errors.js';
import { parseWrapMechanism } from '../../runtime/hsm/mechanisms.js';

const dir = mkdtempSync(join(tmpdir(), 'hsm-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** A file with exactly `mode`, whatever the umask. */
function fileWith(content: string, mode: number): string {
  const path = join(dir, `pin-${++files}`);
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

/** The ConfigError `fn` throws; fails the test if it throws nothing or something else. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('settingsFrom', () => {
  it('a flag wins over its environment variable', () => {
    const s = settingsFrom({ 'token-label': 'from-flag', sessions: 8 }, { TOKEN_LABEL: 'from-env', HSM_SESSIONS: '2' });
    expect(s['token-label']).toBe('from-flag');
    expect(s.sessions).toBe('8');
  });

  it('uses the environment variable when there is no flag', () => {
    const s = settingsFrom({}, { TOKEN_LABEL: 'from-env', POSTGRES_URL: 'postgres://db/x', LOG_LEVEL: 'debug' });
    expect(s).toMatchObject({ 'token-label': 'from-env', 'postgres-url': 'postgres://db/x', 'log-level': 'debug' });
  });

  it('counts empty strings as unset, for flags and for variables', () => {
    expect(settingsFrom({ 'token-label': '' }, { TOKEN_LABEL: 'from-env' })['token-label']).toBe('from-env');
    const s = settingsFrom({ 'master-key-label': '' }, { MASTER_KEY_LABEL: '', SQLITE_PATH: '' });
    expect(s).not.toHaveProperty('master-key-label');
    expect(s).not.toHaveProperty('sqlite-path');
  });
});

describe('the config file', () => {
  const yaml = fileWith('# a mounted file\nproxy-addr: file.example:8443\ntoken-label: from-file\nsessions: 2\nsqlite-path: /var/lib/hsm/keys.db\n', 0o600);
  it('fills what neither flag nor environment sets: flag > env > file, with each source named', () => {
    const { settings, sources } = settingsWithSources({ config: yaml, 'token-label': 'from-flag' }, { HSM_SESSIONS: '8' });
    expect(settings).toMatchObject({ 'proxy-addr': 'file.example:8443', 'token-label': 'from-flag', sessions: '8', 'sqlite-path': '/var/lib/hsm/keys.db' });
    expect(sources).toMatchObject({ 'proxy-addr': 'file', 'token-label': 'flag', sessions: 'env', 'sqlite-path': 'file' });
  });
  it('is named by CONFIG_FILE too, and may be JSON', () => {
    const json = fileWith(JSON.stringify({ 'log-level': 'debug', concurrency: 3 }), 0o600);
    expect(settingsFrom({}, { CONFIG_FILE: json })).toMatchObject({ 'log-level': 'debug', concurrency: '3' });
  });
  it('refuses an unknown option, the PIN, a nested value, bad YAML and a missing file, each in one line', () => {
    const cases: Array<[string, RegExp]> = [
      ['proxy_addr: x:1\n', /unknown option "proxy_addr"; options are the flags' names: pkcs11-module, /],
      ['pin: 1234\n', /the PIN does not belong in a config file/],
      ['sessions: [1, 2]\n', /option "sessions" must be a string or a number/],
      ['proxy-addr: [unclosed\n', /is not valid YAML or JSON/],
      ['- a\n- b\n', /must be a mapping of option names to values/],
    ];
    for (const [text, line] of cases) {
      const err = configError(() => settingsFrom({ config: fileWith(text, 0o600) }, {}));
      expect(err.message).toMatch(line);
      expect(err.message).not.toContain('\n');
      expect(err.message).not.toContain('1234');
    }
    expect(configError(() => settingsFrom({ config: join(dir, 'absent.yaml') }, {})).message).toMatch(/config file .*absent\.yaml cannot be read \(ENOENT\)/);
  });
});

describe('resolveModule', () => {
  it('uses the one vendor module variable that is set', () => {
    const env = { PKCS11_SECUROSYS_MODULE: '/opt/primus/libprimusP11.so' };
    expect(resolveModule(settingsFrom({}, env), env)).toBe('/opt/primus/libprimusP11.so');
  });

  it('refuses to guess between two vendor module variables', () => {
    const env = { PKCS11_THALES_MODULE: '/opt/luna/libCryptoki2.so', PKCS11_IBM_MODULE: '/opt/ibm/libgrep11.so' };
    const err = configError(() => resolveModule(settingsFrom({}, env), env));
    expect(err.message).toMatch(/PKCS11_THALES_MODULE.*PKCS11_IBM_MODULE/);
    expect(err.message).toContain('--pkcs11-module');
  });

  it('--pkcs11-module (or PKCS11_MODULE) wins over vendor variables', () => {
    const env = { PKCS11_THALES_MODULE: '/opt/luna/libCryptoki2.so', PKCS11_IBM_MODULE: '/opt/ibm/libgrep11.so' };
    expect(resolveModule(settingsFrom({ 'pkcs11-module': '/flag.so' }, env), env)).toBe('/flag.so');
    const withVar = { ...env, PKCS11_MODULE: '/var.so' };
    expect(resolveModule(settingsFrom({}, withVar), withVar)).toBe('/var.so');
  });
});

describe('readPin', () => {
  it('takes USER_PIN and removes it from the environment object it was given', () => {
    const env: NodeJS.ProcessEnv = { USER_PIN: '918273', OTHER: 'kept' };
    expect(readPin({}, env)).toBe('918273');
    expect(env).not.toHaveProperty('USER_PIN');
    expect(env.OTHER).toBe('kept');
  });

  it('refuses USER_PIN and a PIN file together', () => {
    const file = fileWith('1234\n', 0o600);
    const err = configError(() => readPin({ 'pin-file': file }, { USER_PIN: '5678' }));
    expect(err.message).toMatch(/both/);
    expect(err.message).not.toContain('5678');
  });

  it('refuses a PIN file others can read, naming chmod 600 and not the PIN', () => {
    const file = fileWith('open-secret-pin\n', 0o644);
    const err = configError(() => readPin({ 'pin-file': file }, {}));
    expect(err.message).toContain(file);
    expect(err.message).toContain('chmod 600');
    expect(err.message).not.toContain('open-secret-pin');
  });

  it('accepts a group-readable PIN file only for a group of ours (a Kubernetes Secret with fsGroup), never group-writable', () => {
    const ours = fileWith('group-pin\n', 0o440);
    expect(readPin({ 'pin-file': ours }, {})).toBe('group-pin'); // owned by us, our primary group
    for (const mode of [0o460, 0o640 | 0o004, 0o450]) {
      expect(configError(() => readPin({ 'pin-file': fileWith('x\n', mode) }, {})).message).toMatch(/chmod 600/);
    }
    if (process.getuid!() !== 0) return; // giving a file to another group needs root (CI runs as root)
    const foreign = fileWith('foreign-group-pin\n', 0o440);
    const notOurs = [65533, 4242].find((g) => g !== process.getgid!() && !process.getgroups!().includes(g))!;
    chownSync(foreign, process.getuid!(), notOurs); // root may give a file to any group
    expect(configError(() => readPin({ 'pin-file': foreign }, {})).message).toMatch(new RegExp(`readable by group ${notOurs}, which this process is not in`));
  });

  it('reads a 0600 PIN file without its trailing newline', () => {
    expect(readPin({ 'pin-file': fileWith('closed-pin-42\n', 0o600) }, {})).toBe('closed-pin-42');
    expect(readPin({ 'pin-file': fileWith('crlf-pin\r\n', 0o600) }, {})).toBe('crlf-pin');
  });

  it('a missing PIN file is a ConfigError naming the path', () => {
    const missing = join(dir, 'no-such-pin');
    const err = configError(() => readPin({ 'pin-file': missing }, {}));
    expect(err.message).toContain(missing);
    expect(err.message).toMatch(/cannot be read/);
  });

  it('a PIN file that exists but cannot be read is a ConfigError, not a raw I/O error', () => {
    const notAFile = join(dir, 'pin-is-a-directory');
    mkdirSync(notAFile, { mode: 0o700 });
    const err = configError(() => readPin({ 'pin-file': notAFile }, {}));
    expect(err.message).toContain(notAFile);
  });

  it('an empty PIN file or no PIN at all is a ConfigError', () => {
    expect(configError(() => readPin({ 'pin-file': fileWith('\n', 0o600) }, {})).message).toMatch(/empty/);
    expect(configError(() => readPin({}, { USER_PIN: '' })).message).toMatch(/USER_PIN.*--pin-file/);
  });
});

describe('parseResidentAlgorithms', () => {
  it('reads a comma list, spaces allowed', () => {
    expect(parseResidentAlgorithms('eddsa-ed25519, rsa-2048')).toEqual(['eddsa-ed25519', 'rsa-2048']);
    expect(parseResidentAlgorithms(undefined)).toEqual([]);
  });

  it('rejects an unknown name, quoting it', () => {
    const err = configError(() => parseResidentAlgorithms('eddsa-ed25519,ed448'));
    expect(err.message).toContain('"ed448"');
  });
});

describe('parseWrapMechanism', () => {
  it('accepts the names, in any case', () => {
    for (const name of ['aes-key-wrap-pad', 'aes-kwp', 'aes-key-wrap']) {
      expect(parseWrapMechanism(name)).toBe(name);
      expect(parseWrapMechanism(` ${name.toUpperCase()} `)).toBe(name);
    }
  });

  it('stores a known numeric id under its name', () => {
    expect(parseWrapMechanism('0x210A')).toBe('aes-key-wrap-pad');
    expect(parseWrapMechanism('0x210b')).toBe('aes-kwp');
    expect(parseWrapMechanism('0x2109')).toBe('aes-key-wrap');
    expect(parseWrapMechanism(String(0x210a))).toBe('aes-key-wrap-pad');
  });

  it('keeps an unknown numeric id as lowercase hex, for vendor mechanisms', () => {
    expect(parseWrapMechanism('0x8000ABCD')).toBe('0x8000abcd');
  });

  it('rejects an unknown name', () => {
    expect(configError(() => parseWrapMechanism('aes-gcm')).message).toContain('"aes-gcm"');
    configError(() => parseWrapMechanism('0xZZ'));
  });
});

describe('resolveHsmConfig', () => {
  const hsmConfig = (argv: Record<string, unknown>) => {
    const env = { PKCS11_MODULE: '/lib.so', USER_PIN: '1234' };
    return resolveHsmConfig(settingsFrom(argv, env), env);
  };

  it('--sessions takes whole numbers from 1 to 1024, default 4', () => {
    expect(hsmConfig({}).sessions).toBe(4);
    expect(hsmConfig({ sessions: 1 }).sessions).toBe(1);
    expect(hsmConfig({ sessions: 1024 }).sessions).toBe(1024);
    for (const bad of [0, -1, 1025, 2.5, Number.NaN]) {
      expect(configError(() => hsmConfig({ sessions: bad })).message).toMatch(/--sessions/);
    }
  });

  it('defaults the master key label and wrap mechanism, and parses the wrap mechanism given', () => {
    expect(hsmConfig({})).toMatchObject({ masterKeyLabel: 'master', wrapMechanism: 'aes-key-wrap-pad', residentAlgorithms: [] });
    expect(hsmConfig({ 'wrap-mechanism': '0x210b' }).wrapMechanism).toBe('aes-kwp');
  });
});

describe('resolveStoreOptions', () => {
  it('PostgreSQL when a URL is set, else the SQLite path', () => {
    expect(resolveStoreOptions({ 'postgres-url': 'postgres://db/x', 'sqlite-path': '/k.db' }, {}).postgresUrl).toBe('postgres://db/x');
    expect(resolveStoreOptions({ 'sqlite-path': '/k.db' }, {})).toEqual({ sqlitePath: '/k.db' });
  });
});
