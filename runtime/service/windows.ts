// `hsm-driver service install|start|stop|status|uninstall` on Windows: registers this exe with
// the Service Control Manager through our Win32 helper. The service runs `service run` (see
// windows-run.ts) with the run options on its command line; the PIN goes to a file that only
// Administrators (and SYSTEM) may change and only the service account may read, never to the
// command line or the registry.
import { mkdirSync } from 'node:fs';
import { win32 as windowsPath } from 'node:path';
import { OPTIONS, type OptionName, type Settings } from '../config.js';
import { ConfigError } from '../errors.js';
import { win32Helper } from '../native/windows-cache.js';
import { SYSTEM_SID } from '../native/windows-acl.js';
import { ERROR_SERVICE_DOES_NOT_EXIST, type ServiceStatus, type Win32Error, type Win32Native } from '../native/win32-api.js';

export const DEFAULT_ACCOUNT = 'NT AUTHORITY\\LocalService';
/** FILE_GENERIC_READ | FILE_GENERIC_EXECUTE, and that plus write and delete ("Modify" in Explorer). */
const READ_EXECUTE = '0x1200a9';
const MODIFY = '0x1301bf';

export interface WindowsInstallOptions {
  name: string;
  /** This exe's full path, as the SCM will start it. */
  execPath: string;
  /** `NT AUTHORITY\LocalService` (default), `LocalSystem`, or a named account (DOMAIN\user). */
  account: string;
  /** For a named account only; from SERVICE_PASSWORD, never a flag. */
  password?: string;
  /** The run options to hand the service (flags and environment of the install command). */
  settings: Settings;
  pin: string;
  /** %ProgramData%. */
  programData: string;
}

/** Where a service named `name` keeps its PIN, its SQLite file and its logs (Windows paths on any host). */
export function servicePaths(programData: string, name: string) {
  const { join } = windowsPath;
  const root = join(programData, 'hsm-driver');
  return { state: join(root, name), pinFile: join(root, name, 'user.pin'), sqlite: join(root, name, 'keys.db'), logs: join(root, 'logs'), logFile: join(root, 'logs', `${name}.log`) };
}

/** Quotes one argument so that CommandLineToArgvW (and so Node's argv) gives it back unchanged. */
export function quoteWindowsArg(arg: string): string {
  if (arg !== '' && !/[\s"]/.test(arg)) return arg;
  let out = '"';
  let slashes = 0;
  for (const ch of arg) {
    if (ch === '\\') {
      slashes++;
      continue;
    }
    out += ch === '"' ? `${'\\'.repeat(slashes * 2 + 1)}"` : `${'\\'.repeat(slashes)}${ch}`;
    slashes = 0;
  }
  return `${out}${'\\'.repeat(slashes * 2)}"`;
}

/** Settings the service gets on its command line; the PIN file and log file are the install's own. */
export function serviceArgs(settings: Settings, paths: ReturnType<typeof servicePaths>): string[] {
  const args: string[] = [];
  for (const name of Object.keys(OPTIONS) as OptionName[]) {
    const value = settings[name];
    if (value === undefined || name === 'pin-file') continue;
    args.push(`--${name}`, value);
  }
  if (!settings['postgres-url'] && !settings['sqlite-path']) args.push('--sqlite-path', paths.sqlite);
  return [...args, '--pin-file', paths.pinFile, '--log-file', paths.logFile];
}

export function checkServiceName(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,80}$/.test(name)) throw new ConfigError(`--name "${name}" must be 1 to 80 letters, digits, '.', '_' or '-'`);
}

export function installWindowsService(o: WindowsInstallOptions): string[] {
  checkServiceName(o.name);
  const url = o.settings['postgres-url'];
  if (url && /^[a-z]+:\/\/[^/@]*:[^/@]*@/i.test(url)) {
    throw new ConfigError('--postgres-url holds a password, which would be readable in the service registry: use a PGPASSFILE instead');
  }
  const win32 = win32Helper();
  // "LocalSystem" is the SCM's name for SYSTEM, which LookupAccountName does not know.
  const account = /^(\.\\)?LocalSystem$/i.test(o.account) ? SYSTEM_SID : win32.lookupAccount(o.account);
  const paths = servicePaths(o.programData, o.name);
  // SYSTEM and Administrators own it all; the account may pass through the top directory and
  // change what is inside its own (keys.db, logs).
  const admins = 'O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)';
  const directories: Array<[string, string]> = [
    [windowsPath.join(o.programData, 'hsm-driver'), `${admins}(A;OICI;${READ_EXECUTE};;;${account})`],
    [paths.state, `${admins}(A;OICI;${MODIFY};;;${account})`],
    [paths.logs, `${admins}(A;OICI;${MODIFY};;;${account})`],
  ];
  mkdirSync(o.programData, { recursive: true });
  // Created with its descriptor, or given it when it exists (a reinstall).
  for (const [dir, sddl] of directories) if (!win32.createDirectory(dir, sddl)) win32.setSecurity(dir, sddl);
  // Read-only for the account: even the service cannot change its own PIN file.
  const reader = account === SYSTEM_SID ? '' : `(A;;FR;;;${account})`;
  win32.writeFileWithSecurity(paths.pinFile, Buffer.from(o.pin, 'utf8'), `O:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)${reader}`);
  const commandLine = [o.execPath, 'service', 'run', '--name', o.name, ...serviceArgs(o.settings, paths)].map(quoteWindowsArg).join(' ');
  const { warnings } = scm(o.name, (w) => w.installService({
    name: o.name,
    displayName: `hsm-driver (${o.name})`,
    description: 'Stateless PKCS#11 signer: polls the job API over mutual TLS and signs with keys wrapped by the HSM.',
    commandLine,
    account: o.account,
    password: o.password,
    autoStart: true,
  }));
  return [
    `wrote ${paths.pinFile} (readable by ${o.account} and Administrators only)`,
    `registered service ${o.name}: automatic start, runs as ${o.account}, restarts on failure`,
    ...warnings.map((w) => `warning: ${w}`),
    `logs: ${paths.logFile}`,
    `next: hsm-driver service start --name ${o.name}`,
  ];
}

/** Runs an SCM call; its Win32 failure becomes one line for the operator (exit 2). */
function scm<T>(name: string, call: (win32: Win32Native) => T): T {
  try {
    return call(win32Helper());
  } catch (err) {
    const code = (err as Partial<Win32Error>).code;
    if (code === ERROR_SERVICE_DOES_NOT_EXIST) throw new ConfigError(`no service named ${name} is installed (hsm-driver service install --name ${name})`);
    if (typeof code === 'number') throw new ConfigError((err as Error).message);
    throw err;
  }
}

export function startWindowsService(name: string): string[] {
  scm(name, (w) => w.startService(name));
  return [`started ${name}`];
}

/** Asks the service to stop, then waits (up to `waitMs`) until the SCM says STOPPED: the drain's length. */
export async function stopWindowsService(name: string, waitMs: number): Promise<string[]> {
  const first = scm(name, (w) => w.stopService(name));
  const lines = [`stopping ${name}: ${first.stateName}`];
  const until = Date.now() + waitMs;
  let status: ServiceStatus = first;
  while (status.stateName !== 'STOPPED' && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    status = scm(name, (w) => w.queryService(name));
  }
  if (status.stateName !== 'STOPPED') throw new ConfigError(`${name} is still ${status.stateName} after ${waitMs / 1000} s`);
  return [...lines, `stopped ${name}: ${exitText(status)}`];
}

export function windowsServiceStatus(name: string): string[] {
  const status = scm(name, (w) => w.queryService(name));
  return [status.stateName, status.stateName === 'STOPPED' ? exitText(status) : `pid ${status.pid}`];
}

export function uninstallWindowsService(name: string): string[] {
  const state = scm(name, (w) => w.queryService(name)).stateName;
  if (state !== 'STOPPED') throw new ConfigError(`${name} is ${state}: stop it first (hsm-driver service stop --name ${name})`);
  scm(name, (w) => w.deleteService(name));
  return [`removed service ${name} (its PIN file, keys and logs under %ProgramData%\\hsm-driver stay)`];
}

function exitText(s: ServiceStatus): string {
  if (s.win32ExitCode === 0) return 'exit code 0';
  if (s.win32ExitCode === 1066) return `exit code ${s.serviceExitCode} (service-specific)`;
  return `Win32 exit code ${s.win32ExitCode}`;
}
