// `hsm-driver service run --name NAME …`: what the Service Control Manager starts. Speaks the
// service protocol through the Win32 helper (START_PENDING → RUNNING; Stop or Shutdown → the
// same graceful drain as SIGTERM, with STOP_PENDING and wait hints while jobs finish → STOPPED
// with the driver's exit code) and logs to a rotating file, errors also to the event log.
import pino, { type Logger } from 'pino';
import type { Settings } from '../config.js';
import { ConfigError } from '../errors.js';
import { createLogger } from '../log.js';
import { RotatingFile } from '../log-file.js';
import { runDriver } from '../driver/driver.js';
import type { DriverState } from '../driver/loop.js';
import { win32Helper } from '../native/windows-cache.js';
import { SERVICE_RUNNING, SERVICE_START_PENDING, SERVICE_STOP_PENDING, SERVICE_STOPPED, type Win32Native } from '../native/win32-api.js';

/** ERROR_SERVICE_SPECIFIC_ERROR: the exit code is in the service-specific field. */
const SERVICE_SPECIFIC = 1066;
/** How often a pending state is re-reported, and the wait hint it carries. */
const PENDING_TICK_MS = 2_000;
const START_HINT_MS = 30_000;

/** Forwards error lines to the Windows event log under the service's name. */
function eventLogStream(win32: Win32Native, source: string): pino.DestinationStream {
  return {
    write(line: string) {
      try {
        const { msg, err } = JSON.parse(line) as { msg?: string; err?: { message?: string } };
        win32.reportEvent(source, 'error', [msg, err?.message].filter(Boolean).join(': '));
      } catch {
        /* the file has the line; the event log is a convenience */
      }
    },
  };
}

/** Waits for the dispatcher's first word: "started", or "error:N" when the SCM did not start us. */
function dispatch(win32: Win32Native, name: string, onControl: (event: string) => void): Promise<{ exited: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let exited: () => void;
    const exitedPromise = new Promise<void>((r) => (exited = r));
    win32.startServiceDispatcher(name, (event) => {
      if (event === 'started' && !settled) {
        settled = true;
        resolve({ exited: exitedPromise });
      } else if (event.startsWith('error:') && !settled) {
        settled = true;
        const code = event.slice('error:'.length);
        reject(new ConfigError(`service run is for the Service Control Manager (StartServiceCtrlDispatcher: ${code}); in a console use: hsm-driver run`));
      } else if (event === 'exited') exited();
      else onControl(event);
    });
  });
}

export async function runAsWindowsService(name: string, settings: Settings, env: NodeJS.ProcessEnv, logFile: string): Promise<number> {
  const win32 = win32Helper();
  const file = new RotatingFile(logFile);
  const log: Logger = createLogger(
    settings['log-level'] ?? 'info',
    pino.multistream([{ level: 'trace', stream: file }, { level: 'error', stream: eventLogStream(win32, `hsm-driver-${name}`) }]),
  );
  const stop = new AbortController();
  const { exited } = await dispatch(win32, name, (event) => {
    log.info({ control: event }, 'service control');
    if (event === 'stop' || event === 'shutdown') stop.abort();
  });

  let state = SERVICE_START_PENDING;
  let hintMs = START_HINT_MS;
  const report = (next: number, waitHintMs = 0, win32Exit = 0, serviceExit = 0) => {
    state = next;
    hintMs = waitHintMs;
    win32.setServiceStatus(next, waitHintMs, win32Exit, serviceExit);
  };
  report(SERVICE_START_PENDING, START_HINT_MS);
  // Pending states must advance their checkpoint or the SCM gives up on us.
  const ticker = setInterval(() => {
    if (state === SERVICE_START_PENDING || state === SERVICE_STOP_PENDING) report(state, hintMs);
  }, PENDING_TICK_MS);
  const drainHintMs = (Number(settings['drain-timeout'] ?? 30) + 5) * 1000;
  const onState = (s: DriverState) => {
    if ((s === 'running' || s === 'degraded') && state === SERVICE_START_PENDING) report(SERVICE_RUNNING);
    if (s === 'draining') report(SERVICE_STOP_PENDING, drainHintMs);
  };
  let code: number;
  try {
    code = await runDriver(settings, env, log, stop.signal, onState);
  } catch (err) {
    log.error({ err }, err instanceof ConfigError ? 'service cannot start' : 'service failed');
    code = err instanceof ConfigError ? 2 : 1;
  }
  clearInterval(ticker);
  log.info({ exitCode: code }, 'service stopped');
  report(SERVICE_STOPPED, 0, code === 0 ? 0 : SERVICE_SPECIFIC, code);
  file.close();
  // After STOPPED the dispatcher returns (within a millisecond); a ref'd timer keeps the process
  // here until it has, since the native side no longer holds the event loop.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 5_000)))]);
  clearTimeout(timer);
  return code;
}
