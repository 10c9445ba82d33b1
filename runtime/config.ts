// Every setting the driver takes: its flag, its environment variable, its default, and how it
// is checked. The one place that reads configuration; the PIN is read here and nowhere else.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isSea } from 'node:sea';
import { ALGORITHMS, isAlgorithm, type Algorithm } from './crypto/algorithms.js';
import { ConfigError } from './errors.js';
import type { HsmConfig } from './hsm/hsm.js';
import { DEFAULT_WRAP_MECHANISM, parseWrapMechanism } from './hsm/mechanisms.js';
import type { StoreOptions } from './store/index.js';
import { readConfigFile } from './config-file.js';
import { readFault } from './native/windows-acl.js';
import { win32Helper } from './native/windows-cache.js';

export interface OptionSpec {
  env: string;
  type: 'string' | 'number' | 'boolean';
  describe: string;
  group: string;
}

/** Flag name → spec. A flag wins over its environment variable; both win over the default. */
export const OPTIONS = {
  'pkcs11-module': { env: 'PKCS11_MODULE', type: 'string', group: 'HSM', describe: 'path of the PKCS#11 library (also PKCS11_THALES_MODULE, PKCS11_SECUROSYS_MODULE, PKCS11_IBM_MODULE; default: SoftHSM2 if installed)' },
  'token-label': { env: 'TOKEN_LABEL', type: 'string', group: 'HSM', describe: 'select the token by label (the usual way)' },
  'token-serial': { env: 'TOKEN_SERIAL', type: 'string', group: 'HSM', describe: 'select the token by serial number' },
  slot: { env: 'PKCS11_SLOT', type: 'number', group: 'HSM', describe: 'select the token by slot id' },
  'pin-file': { env: 'USER_PIN_FILE', type: 'string', group: 'HSM', describe: 'file holding the user PIN, mode 0600 (or set USER_PIN)' },
  'master-key-label': { env: 'MASTER_KEY_LABEL', type: 'string', group: 'HSM', describe: 'label of the AES master (wrapping) key [default: master]' },
  'integrity-key-label': { env: 'INTEGRITY_KEY_LABEL', type: 'string', group: 'HSM', describe: 'label of the HMAC-SHA256 key that seals audit records and key rows [default: integrity]' },
  'wrap-mechanism': { env: 'WRAP_MECHANISM', type: 'string', group: 'HSM', describe: `aes-key-wrap-pad (RFC 5649), aes-kwp (vendor id 0x210b), aes-key-wrap (RFC 3394) or a numeric id [default: ${DEFAULT_WRAP_MECHANISM}]` },
  'resident-algorithms': { env: 'RESIDENT_ALGORITHMS', type: 'string', group: 'HSM', describe: 'comma list of algorithms kept as non-extractable token objects instead of wrapped blobs (for tokens that cannot wrap them, e.g. eddsa-ed25519 on SoftHSM)' },
  'require-sealed-rows': { env: 'REQUIRE_SEALED_ROWS', type: 'boolean', group: 'HSM', describe: 'refuse (KEY_INTEGRITY) key rows without a seal, written before row seals existed; run keys seal first [default: false]' },
  sessions: { env: 'HSM_SESSIONS', type: 'number', group: 'HSM', describe: 'PKCS#11 sessions in the pool [default: 4]' },
  'key-cache-size': { env: 'KEY_CACHE_SIZE', type: 'number', group: 'HSM', describe: 'unwrapped keys kept per session for repeated signs; 0 = off, each sign unwraps and destroys [default: 0]' },
  'key-cache-ttl': { env: 'KEY_CACHE_TTL', type: 'number', group: 'HSM', describe: 'seconds an unwrapped key may be kept in the HSM before it is destroyed [default: 60]' },
  'sqlite-path': { env: 'SQLITE_PATH', type: 'string', group: 'Database', describe: 'SQLite file, used when no PostgreSQL URL is set [default: ~/.local/share/hsm-driver/keys.db]' },
  'postgres-url': { env: 'POSTGRES_URL', type: 'string', group: 'Database', describe: 'PostgreSQL connection URL (shared by several drivers)' },
  'audit-trail': { env: 'AUDIT_TRAIL', type: 'string', group: 'Database', describe: 'on: every keygen and sign commits an HSM-sealed audit record before it is answered; off: no records (for benchmarks only) [default: on]' },
  'proxy-addr': { env: 'PROXY_ADDR', type: 'string', group: 'Job API', describe: 'job API address host:port (base URL https://host:port/v1)' },
  'client-cert': { env: 'CLIENT_CERT', type: 'string', group: 'Job API', describe: "this driver's certificate, PEM (leaf, then its intermediate)" },
  'client-key': { env: 'CLIENT_KEY', type: 'string', group: 'Job API', describe: "this driver's private key, PEM" },
  'ca-cert': { env: 'CA_CERT', type: 'string', group: 'Job API', describe: "CA bundle the job API's certificate must chain to, PEM" },
  concurrency: { env: 'CONCURRENCY', type: 'number', group: 'Job API', describe: 'jobs in flight at once [default: --sessions]' },
  'drain-timeout': { env: 'DRAIN_TIMEOUT', type: 'number', group: 'Job API', describe: 'seconds to let running jobs finish on SIGTERM [default: 30]' },
  'poll-wait': { env: 'POLL_WAIT', type: 'number', group: 'Job API', describe: 'long-poll wait in seconds, 0 to 30 [default: 30]' },
  'backoff-max': { env: 'BACKOFF_MAX', type: 'number', group: 'Job API', describe: 'longest pause in seconds between retries of a failing API or HSM [default: 15]' },
  'health-interval': { env: 'HEALTH_INTERVAL', type: 'number', group: 'Job API', describe: 'seconds between background HSM and database checks [default: 10]' },
  'metrics-addr': { env: 'METRICS_ADDR', type: 'string', group: 'Probes', describe: 'serve /metrics, /livez and /readyz over plain HTTP on host:port, e.g. 127.0.0.1:9464 [default: off]' },
  'log-level': { env: 'LOG_LEVEL', type: 'string', group: 'Logging', describe: 'fatal, error, warn, info, debug or trace [default: info]' },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof OPTIONS;
export type Settings = Partial<Record<OptionName, string>>;

const VENDOR_MODULE_ENV = ['PKCS11_THALES_MODULE', 'PKCS11_SECUROSYS_MODULE', 'PKCS11_IBM_MODULE'] as const;
const SOFTHSM_PATHS = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  'C:\\SoftHSM2\\lib\\softhsm2-x64.dll',
];

/** Where each setting came from, for `config check` and the logs. */
export type Source = 'flag' | 'env' | 'file';

/** The config file named by --config or CONFIG_FILE, if any. */
export function configFileOf(argv: Record<string, unknown>, env: NodeJS.ProcessEnv): string | undefined {
  const flag = argv.config;
  return typeof flag === 'string' && flag !== '' ? flag : env.CONFIG_FILE || undefined;
}

/**
 * Merges parsed flags over the environment over the config file (flag > env > file). Empty
 * strings count as unset, as in shells.
 */
export function settingsWithSources(argv: Record<string, unknown>, env: NodeJS.ProcessEnv): { settings: Settings; sources: Partial<Record<OptionName, Source>> } {
  const path = configFileOf(argv, env);
  const file = path ? readConfigFile(path, Object.keys(OPTIONS)) : {};
  const settings: Settings = {};
  const sources: Partial<Record<OptionName, Source>> = {};
  for (const [name, spec] of Object.entries(OPTIONS) as Array<[OptionName, OptionSpec]>) {
    // A flag given twice is an array to yargs: the last one wins, as in most tools.
    const flag = Array.isArray(argv[name]) ? (argv[name] as unknown[]).at(-1) : argv[name];
    const candidates: Array<[Source, unknown]> = [['flag', flag], ['env', env[spec.env]], ['file', file[name]]];
    const found = candidates.find(([, v]) => v !== undefined && v !== '');
    if (found) {
      settings[name] = String(found[1]);
      sources[name] = found[0];
    }
  }
  return { settings, sources };
}

export function settingsFrom(argv: Record<string, unknown>, env: NodeJS.ProcessEnv): Settings {
  return settingsWithSources(argv, env).settings;
}

export function resolveModule(s: Settings, env: NodeJS.ProcessEnv): string {
  if (s['pkcs11-module']) return s['pkcs11-module'];
  const vendor = VENDOR_MODULE_ENV.filter((name) => env[name]);
  if (vendor.length > 1) throw new ConfigError(`several vendor modules are set (${vendor.join(', ')}); choose one with --pkcs11-module`);
  if (vendor.length === 1) return env[vendor[0]!]!;
  const softhsm = SOFTHSM_PATHS.find((p) => existsSync(p));
  if (softhsm) return softhsm;
  throw new ConfigError('no PKCS#11 module: set --pkcs11-module or PKCS11_MODULE');
}

/**
 * The PIN comes from USER_PIN or a PIN file, never from a flag value (flags show in `ps`).
 * USER_PIN is removed from the environment once read, so child processes do not inherit it.
 */
export function readPin(s: Settings, env: NodeJS.ProcessEnv): string {
  const fromEnv = env.USER_PIN;
  if (fromEnv !== undefined && fromEnv !== '' && s['pin-file']) throw new ConfigError('both USER_PIN and a PIN file are set; use one');
  if (fromEnv !== undefined && fromEnv !== '') {
    delete env.USER_PIN;
    if (env === process.env) blankStartEnvironment('USER_PIN', fromEnv);
    return fromEnv;
  }
  const file = s['pin-file'];
  if (!file) throw new ConfigError('no PIN: set USER_PIN or --pin-file (USER_PIN_FILE)');
  let st: Stats;
  try {
    st = statSync(file);
  } catch {
    throw new ConfigError(`PIN file ${file} cannot be read`);
  }
  const posixFault = process.platform === 'win32' ? undefined : pinFileModeFault(st);
  if (posixFault) throw new ConfigError(`PIN file ${file} ${posixFault}`);
  const aclFault = process.platform === 'win32' ? windowsPinFault(file) : undefined;
  if (aclFault) throw new ConfigError(`PIN file ${file} ${aclFault}; let only this account and Administrators read it (service install writes it so)`);
  let pin: string;
  try {
    pin = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new ConfigError(`PIN file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (pin === '') throw new ConfigError(`PIN file ${file} is empty`);
  return pin;
}

/**
 * Linux keeps the environment a process started with in its memory and shows it in
 * /proc/PID/environ for the process's whole life; unsetenv only unlinks the variable. Overwrite
 * the value there with zeros, through /proc/self/mem. Best effort: elsewhere, or when the kernel
 * refuses, the PIN stays where any process of the same user (or root) can read it.
 */
function blankStartEnvironment(name: string, value: string): void {
  if (process.platform !== 'linux') return;
  try {
    // Fields after "(comm)": state is field 3, env_start and env_end are fields 50 and 51.
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[47]);
    const block = Buffer.alloc(Number(fields[48]) - start);
    const mem = openSync('/proc/self/mem', 'r+');
    try {
      readSync(mem, block, 0, block.length, start);
      const entry = Buffer.from(`${name}=${value}\0`);
      for (let at = block.indexOf(entry); at !== -1; at = block.indexOf(entry, at + 1)) {
        if (at > 0 && block[at - 1] !== 0) continue; // the end of another variable's name
        const blank = Buffer.alloc(entry.length - name.length - 2);
        writeSync(mem, blank, 0, blank.length, start + at + name.length + 1);
      }
    } finally {
      closeSync(mem);
    }
  } catch {
    // not fatal: the driver works the same, with the weaker hiding
  }
}

/**
 * POSIX: no access for others, no write for the group. Group read is accepted only for a group
 * of this process on a file owned by root or by us: a Kubernetes Secret mounted with fsGroup is
 * root-owned 0440, and on a host a dedicated group can hand the PIN to the service user.
 */
function pinFileModeFault(st: Stats): string | undefined {
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
  if ((st.mode & 0o037) !== 0) return `is open to others, or writable or executable by its group (mode ${mode}); chmod 600 it`;
  if ((st.mode & 0o040) === 0) return undefined;
  const groups = [process.getgid!(), ...(process.getgroups?.() ?? [])];
  if ((st.uid === 0 || st.uid === process.getuid!()) && groups.includes(st.gid)) return undefined;
  return `is readable by group ${st.gid}, which this process is not in, or owned by uid ${st.uid} (mode ${mode}); chmod 600 it`;
}

/** Windows: who else may read the PIN file (by its DACL), when the Win32 helper is at hand (the single binary). */
function windowsPinFault(file: string): string | undefined {
  if (!isSea()) return undefined;
  const win32 = win32Helper();
  return readFault(win32.readSecurity(file), win32.currentUserSid());
}

export function parseResidentAlgorithms(value: string | undefined): Algorithm[] {
  if (!value) return [];
  return value.split(',').map((a) => {
    const name = a.trim();
    if (!isAlgorithm(name)) throw new ConfigError(`--resident-algorithms: unknown algorithm "${name}"; one of ${ALGORITHMS.join(', ')}`);
    return name;
  });
}

function yesNo(value: string | undefined, name: string): boolean {
  if (value === undefined) return false;
  const v = value.toLowerCase();
  if (['true', 'yes', '1', 'on'].includes(v)) return true;
  if (['false', 'no', '0', 'off'].includes(v)) return false;
  throw new ConfigError(`--${name} must be true or false, got "${value}"`);
}

function wholeNumber(value: string | undefined, name: string, fallback: number, min = 1, max = 1024): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`--${name} must be a whole number from ${min} to ${max}, got "${value}"`);
  return n;
}

export function resolveHsmConfig(s: Settings, env: NodeJS.ProcessEnv): HsmConfig {
  const slot = s.slot === undefined ? undefined : Number(s.slot);
  if (slot !== undefined && !Number.isInteger(slot)) throw new ConfigError(`--slot must be a whole number, got "${s.slot}"`);
  return {
    module: resolveModule(s, env),
    selector: { label: s['token-label'], serial: s['token-serial'], slot },
    pin: readPin(s, env),
    sessions: wholeNumber(s.sessions, 'sessions', 4),
    masterKeyLabel: s['master-key-label'] ?? 'master',
    integrityKeyLabel: s['integrity-key-label'] ?? 'integrity',
    wrapMechanism: parseWrapMechanism(s['wrap-mechanism'] ?? DEFAULT_WRAP_MECHANISM),
    residentAlgorithms: parseResidentAlgorithms(s['resident-algorithms']),
    requireSealedRows: yesNo(s['require-sealed-rows'], 'require-sealed-rows'),
    keyCache: { size: wholeNumber(s['key-cache-size'], 'key-cache-size', 0, 0, 100_000), ttlMs: wholeNumber(s['key-cache-ttl'], 'key-cache-ttl', 60, 1, 86_400) * 1000 },
  };
}

export function defaultSqlitePath(env: NodeJS.ProcessEnv): string {
  if (process.platform === 'win32') return join(env.LOCALAPPDATA ?? homedir(), 'hsm-driver', 'keys.db');
  return join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'hsm-driver', 'keys.db');
}

/** Whether keygen and sign jobs leave audit records (on unless the operator says off). */
export function auditTrailOn(s: Settings): boolean {
  const value = s['audit-trail'] ?? 'on';
  if (value !== 'on' && value !== 'off') throw new ConfigError(`--audit-trail must be on or off, got "${value}"`);
  return value === 'on';
}

export function resolveStoreOptions(s: Settings, env: NodeJS.ProcessEnv): StoreOptions {
  const postgresUrl = s['postgres-url'];
  return postgresUrl ? { postgresUrl, sqlitePath: '' } : { sqlitePath: s['sqlite-path'] ?? defaultSqlitePath(env) };
}

export interface RunConfig {
  proxyAddr: string;
  clientCert?: string;
  clientKey?: string;
  caCert?: string;
  concurrency: number;
  drainTimeoutMs: number;
  pollWaitSeconds: number;
  backoffCapMs: number;
  healthIntervalMs: number;
  metricsAddr?: string | undefined;
}

export function resolveRunConfig(s: Settings, sessions: number): RunConfig {
  const proxyAddr = s['proxy-addr'];
  if (!proxyAddr) throw new ConfigError('no job API address: set --proxy-addr host:port (PROXY_ADDR)');
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(proxyAddr)) throw new ConfigError(`--proxy-addr must be host:port, got "${proxyAddr}"`);
  return {
    proxyAddr,
    clientCert: s['client-cert'],
    clientKey: s['client-key'],
    caCert: s['ca-cert'],
    concurrency: wholeNumber(s.concurrency, 'concurrency', sessions),
    drainTimeoutMs: wholeNumber(s['drain-timeout'], 'drain-timeout', 30, 0, 3600) * 1000,
    pollWaitSeconds: wholeNumber(s['poll-wait'], 'poll-wait', 30, 0, 30),
    backoffCapMs: wholeNumber(s['backoff-max'], 'backoff-max', 15, 1, 3600) * 1000,
    healthIntervalMs: wholeNumber(s['health-interval'], 'health-interval', 10, 1, 3600) * 1000,
    metricsAddr: s['metrics-addr'],
  };
}
