// `hsm-driver service install|start|stop|status|uninstall|run`: the same verbs on both
// platforms, driving systemd on Linux and the Service Control Manager on Windows.
import type { Argv, CommandModule } from 'yargs';
import { readPin, settingsFrom } from '../config.js';
import { ConfigError } from '../errors.js';
import { installService, systemctlVerb } from '../service/systemd.js';
import { DEFAULT_ACCOUNT, installWindowsService, startWindowsService, stopWindowsService, uninstallWindowsService, windowsServiceStatus } from '../service/windows.js';
import { runAsWindowsService } from '../service/windows-run.js';
import type { Io } from './cli.js';
import { withOptions } from './options.js';

const ACTIONS = ['install', 'start', 'stop', 'status', 'uninstall', 'run'] as const;
const windows = process.platform === 'win32';

/** `setExit` receives the command's exit code (the CLI returns it; only main.ts exits). */
export function serviceCommand(io: Io, setExit: (code: number) => void): CommandModule<object, Record<string, unknown>> {
  return {
    command: 'service <action>',
    describe: windows
      ? 'install (register this exe with the Service Control Manager), start, stop, status, uninstall; run is what the SCM starts'
      : 'install (a hardened systemd unit, as root), start, stop, status, uninstall',
    builder: (y: Argv) =>
      withOptions(y, true)
        .positional('action', { choices: ACTIONS, demandOption: true })
        .option('name', { type: 'string', default: 'hsm-driver', describe: 'service (unit) name', group: 'Service:' })
        .option('exec-path', { type: 'string', describe: 'binary the service starts [default: this executable]', group: 'Service:' })
        // Windows
        .option('account', { type: 'string', default: DEFAULT_ACCOUNT, describe: 'Windows: account the service runs as (a named one takes its password from SERVICE_PASSWORD)', group: 'Service:' })
        .option('log-file', { type: 'string', describe: 'Windows, service run: the rotating log file (install sets it)', group: 'Service:' })
        .option('stop-timeout', { type: 'number', default: 60, describe: 'seconds `service stop` waits for STOPPED', group: 'Service:' })
        // Linux
        .option('user', { type: 'string', default: 'hsm-driver', describe: 'Linux: system user the service runs as (created if missing)', group: 'Service:' })
        .option('unit-dir', { type: 'string', default: '/etc/systemd/system', group: 'Service:' })
        .option('config-dir', { type: 'string', default: '/etc/hsm-driver', describe: 'Linux: holds NAME.env and user.pin', group: 'Service:' })
        .option('read-write-path', { type: 'string', array: true, default: [], describe: 'Linux: extra writable path (e.g. a SoftHSM token dir); repeatable', group: 'Service:' })
        .option('create-user', { type: 'boolean', default: true, group: 'Service:' }),
    handler: async (argv) => {
      const name = String(argv.name);
      const action = argv.action as (typeof ACTIONS)[number];
      const say = (lines: string[]) => lines.forEach((line) => io.stdout(line));
      if (!windows) {
        if (action === 'run') throw new ConfigError('service run is what the Windows Service Control Manager starts; on Linux systemd runs: hsm-driver run');
        if (action !== 'install') return say(systemctlVerb(action, name));
        return say(
          installService(
            {
              execPath: (argv['exec-path'] as string | undefined) ?? process.execPath,
              name,
              user: String(argv.user),
              unitDir: String(argv['unit-dir']),
              configDir: String(argv['config-dir']),
              readWritePaths: (argv['read-write-path'] as unknown[]).map(String),
            },
            argv['create-user'] as boolean,
          ),
        );
      }
      const settings = settingsFrom(argv, io.env);
      switch (action) {
        case 'install':
          return say(
            installWindowsService({
              name,
              execPath: (argv['exec-path'] as string | undefined) ?? process.execPath,
              account: String(argv.account),
              password: io.env.SERVICE_PASSWORD || undefined,
              settings,
              pin: readPin(settings, io.env),
              programData: io.env.ProgramData ?? io.env.PROGRAMDATA ?? 'C:\\ProgramData',
            }),
          );
        case 'start':
          return say(startWindowsService(name));
        case 'stop':
          return say(await stopWindowsService(name, Number(argv['stop-timeout']) * 1000));
        case 'status':
          return say(windowsServiceStatus(name));
        case 'uninstall':
          return say(uninstallWindowsService(name));
        case 'run': {
          const logFile = argv['log-file'] as string | undefined;
          if (!logFile) throw new ConfigError('service run needs --log-file (service install sets it)');
          setExit(await runAsWindowsService(name, settings, io.env, logFile));
        }
      }
    },
  };
}
