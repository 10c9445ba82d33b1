// The shape of the Windows addon built from win32.cc beside this file (loaded only on win32): the
// Service Control Manager protocol and registration, file security descriptors, the event log.

/** SERVICE_STATUS.dwCurrentState values, as passed to setServiceStatus and returned by queryService. */
export const SERVICE_STOPPED = 1;
export const SERVICE_START_PENDING = 2;
export const SERVICE_STOP_PENDING = 3;
export const SERVICE_RUNNING = 4;
export const SERVICE_CONTINUE_PENDING = 5;
export const SERVICE_PAUSE_PENDING = 6;
export const SERVICE_PAUSED = 7;

/** QUERY_SERVICE_CONFIG.dwStartType values, as returned by serviceConfig. */
export const SERVICE_AUTO_START = 2;
export const SERVICE_DEMAND_START = 3;
export const SERVICE_DISABLED = 4;

/** Win32 error codes the callers branch on (the `code` of a thrown Win32Error). */
export const ERROR_SERVICE_ALREADY_RUNNING = 1056;
export const ERROR_SERVICE_DOES_NOT_EXIST = 1060;
export const ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061;
export const ERROR_SERVICE_NOT_ACTIVE = 1062;
export const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063;
export const ERROR_SERVICE_SPECIFIC_ERROR = 1066;
export const ERROR_SERVICE_MARKED_FOR_DELETE = 1072;
export const ERROR_SERVICE_EXISTS = 1073;

export type ServiceStateName =
  | 'STOPPED'
  | 'START_PENDING'
  | 'STOP_PENDING'
  | 'RUNNING'
  | 'CONTINUE_PENDING'
  | 'PAUSE_PENDING'
  | 'PAUSED'
  | 'UNKNOWN';

/**
 * What the dispatcher tells JS: "started" (ServiceMain ran, START_PENDING reported), "stop" /
 * "shutdown" (STOP_PENDING already reported natively), "exited" (the dispatcher returned after
 * STOPPED), or "error:<code>" (e.g. "error:1063": not started by the SCM).
 */
export type ServiceControlEvent = 'started' | 'stop' | 'shutdown' | 'exited' | `error:${number}`;

/** A Win32 failure: message `Call(arg): <code> <system text>`; TypeErrors are thrown for bad arguments. */
export interface Win32Error extends Error {
  code: number;
}

export interface ServiceStatus {
  /** One of the SERVICE_* state constants. */
  state: number;
  /** The state's name. */
  stateName: ServiceStateName;
  /** 1066 when the service reported a service-specific code; 1077 before the first start. */
  win32ExitCode: number;
  /** The service-specific exit code (meaningful when win32ExitCode is 1066). */
  serviceExitCode: number;
  /** Process id while running, 0 when stopped. */
  pid: number;
  /** Milliseconds the service asked for before its next report (pending states only). */
  waitHint: number;
  /** Progress counter of a pending state, 0 otherwise. */
  checkPoint: number;
  /** SERVICE_ACCEPT_* bits: 5 (STOP|SHUTDOWN) while RUNNING, 0 while pending or stopped. */
  controlsAccepted: number;
}

export interface ServiceInstallOptions {
  /** Service key name (also the name passed to startServiceDispatcher). */
  name: string;
  /** Name shown in services.msc; defaults to `name`. */
  displayName?: string;
  /** Description shown in services.msc. */
  description?: string;
  /** Full command line, exe path quoted, e.g. `"C:\...\hsm-driver.exe" service run --name X`. */
  commandLine: string;
  /** e.g. "NT AUTHORITY\\LocalService"; omitted means LocalSystem. */
  account?: string;
  /** Password of a named account; not used for the built-in service accounts. */
  password?: string;
  /** SERVICE_AUTO_START when true, SERVICE_DEMAND_START otherwise. */
  autoStart: boolean;
}

export interface ServiceInstallResult {
  /** Optional settings the SCM refused (description, failure actions), one line each; the service is installed regardless. */
  warnings: string[];
}

export interface ServiceConfig {
  /** The registered command line (lpBinaryPathName). */
  commandLine: string;
  /** The account the service runs as ("LocalSystem", "NT AUTHORITY\\LocalService", …). */
  account: string | null;
  /** One of the SERVICE_*_START constants. */
  startType: number;
  /** The display name. */
  displayName: string;
  /** SERVICE_WIN32_OWN_PROCESS (16) for ours. */
  serviceType: number;
  /** The description, or null when the SCM does not report one. */
  description: string | null;
  /** Recovery actions (type 1 = restart), or null when the SCM does not report them (Wine). */
  failureActions: { resetPeriodSec: number; actions: Array<{ type: number; delayMs: number }> } | null;
  /** Whether a STOPPED with a non-zero exit code counts as a failure, or null when not reported. */
  failureActionsOnNonCrashFailures: boolean | null;
}

export interface Ace {
  /** True for the access-allowed types (plain, object, callback), false for the denied ones. */
  allow: boolean;
  /** ACE_HEADER.AceType (0 allowed, 1 denied, 5/6 object, 9/10 callback). */
  type: number;
  /** The trustee as S-1-…. */
  sid: string;
  /** The access mask, unsigned (FILE_ALL_ACCESS = 0x1f01ff). */
  mask: number;
  /** Whether the ACE was inherited from the parent (INHERITED_ACE). */
  inherited: boolean;
  /** ACE_HEADER.AceFlags (OI = 1, CI = 2, NP = 4, IO = 8, INHERITED = 0x10). */
  flags: number;
}

export interface FileSecurity {
  /** Owner SID as S-1-…, "" if the descriptor has none (so it matches no trusted SID). */
  owner: string;
  /** False for a NULL DACL (everyone has full access). */
  daclPresent: boolean;
  /** True when the DACL does not inherit from the parent (SE_DACL_PROTECTED). */
  daclProtected: boolean;
  /** The DACL's entries, in order. */
  aces: Ace[];
}

export interface Win32Native {
  /** Connects this process to the SCM on a native thread; events arrive on the JS thread via `onControl`. Once only. */
  startServiceDispatcher(name: string, onControl: (event: ServiceControlEvent) => void): void;
  /** Reports a state to the SCM (checkpoint and accepted controls derived); serviceExitCode ≠ 0 reports 1066. Throws 1062 before "started" or after STOPPED. */
  setServiceStatus(state: number, waitHintMs: number, win32ExitCode: number, serviceExitCode: number): void;
  /** CreateServiceW (own process) plus description and restart-on-failure settings; throws 1073 if it exists. */
  installService(options: ServiceInstallOptions): ServiceInstallResult;
  /** StartServiceW; throws 1056 if already running, 1060 if not installed. */
  startService(name: string): void;
  /** Sends STOP and returns the status right after (STOP_PENDING); throws 1062 if not running, 1061 if already stopping. */
  stopService(name: string): ServiceStatus;
  /** QueryServiceStatusEx; throws 1060 if not installed. */
  queryService(name: string): ServiceStatus;
  /** DeleteService; a running service is removed once it stops. */
  deleteService(name: string): void;
  /** What is registered for the service (QueryServiceConfigW / QueryServiceConfig2W). */
  serviceConfig(name: string): ServiceConfig;
  /** The process token's user SID as S-1-…. */
  currentUserSid(): string;
  /** LookupAccountNameW → SID string; throws 1332 for an unknown name. */
  lookupAccount(name: string): string;
  /** Owner and DACL of a file or directory. */
  readSecurity(path: string): FileSecurity;
  /** CreateDirectoryW with the SDDL's descriptor; false if it already exists (its security untouched). */
  createDirectory(path: string, sddl: string): boolean;
  /** Applies the SDDL's owner (if any) and DACL as a protected DACL; the SDDL must have a D: part. */
  setSecurity(path: string, sddl: string): void;
  /** Creates or replaces a file with the SDDL's descriptor (applied before any byte is written), writes, flushes. */
  writeFileWithSecurity(path: string, data: Buffer, sddl: string): void;
  /** Writes one event-log entry (event id 0, no message DLL); false if it could not. */
  reportEvent(source: string, type: 'error' | 'warning' | 'information', message: string): boolean;
}
