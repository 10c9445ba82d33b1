// The command line: yargs wiring for every command, each a thin call into the runtime.
// Returns an exit code; only main.ts exits the process.
import { readFileSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { settingsFrom, type Settings } from '../config.js';
import { ConfigError, InputError, toWireError } from '../errors.js';
import { hsmList, hsmTest } from './hsm-commands.js';
import { createLogger } from '../log.js';
import { runOneShot } from './oneshot.js';
import { runDriver } from '../driver/driver.js';
import { configCheck, configInit } from './config-command.js';
import { auditExport, auditVerify } from './audit-command.js';
import { keysCommand } from './keys-command.js';
import { serviceCommand } from './service-command.js';
import { withOptions } from './options.js';
import { addonOrigin } from '../hsm/addon.js';
import { versionLines } from '../version.js';

export interface Io {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  readStdin: () => string;
  env: NodeJS.ProcessEnv;
  /** Returns a signal that aborts on the first SIGTERM/SIGINT (the second one forces exit). */
  stopSignal: () => AbortSignal;
  /** stderr when it is a terminal (progress bars draw there); undefined otherwise. */
  terminal?: NodeJS.WriteStream | undefined;
}

function readJobInput(argv: Record<string, unknown>, io: Io): unknown {
  let text: string;
  if (typeof argv.input === 'string') text = argv.input;
  else if (typeof argv['input-file'] === 'string') {
    try {
      text = readFileSync(argv['input-file'], 'utf8');
    } catch {
      throw new ConfigError(`cannot read input file ${argv['input-file']}`);
    }
  } else text = io.readStdin();
  try {
    return JSON.parse(text);
  } catch {
    throw new InputError('input is not valid JSON');
  }
}

/** The commands, for the one-line answer to a mistyped one (yargs would list every flag instead). */
export const COMMANDS = ['run', 'keygen', 'sign', 'health', 'hsm', 'keys', 'audit', 'service', 'config', 'version'] as const;

export async function runCli(args: string[], io: Io): Promise<number> {
  const first = args[0];
  if (first !== undefined && !first.startsWith('-') && !(COMMANDS as readonly string[]).includes(first)) {
    io.stderr(`hsm-driver: unknown command ${JSON.stringify(first)}; commands: ${COMMANDS.join(', ')} (see --help)`);
    return 2;
  }
  let exitCode = 0;
  const settingsOf = (argv: Record<string, unknown>): Settings => settingsFrom(argv, io.env);
  const loggerOf = (argv: Record<string, unknown>) => createLogger(settingsOf(argv)['log-level']);

  const oneShot = (kind: string, describe: string) => ({
    command: kind,
    describe,
    builder: (y: Argv) =>
      withOptions(y)
        .option('input', { type: 'string', describe: 'job input as JSON (else --input-file, else stdin) [env JOB_INPUT]', group: 'Job:' })
        .option('input-file', { type: 'string', describe: 'file holding the job input JSON [env JOB_INPUT_FILE]', group: 'Job:' }),
    handler: async (argv: Record<string, unknown>) => {
      const withEnv = { ...argv, input: argv.input ?? io.env.JOB_INPUT, 'input-file': argv['input-file'] ?? io.env.JOB_INPUT_FILE };
      let input: unknown;
      try {
        input = readJobInput(withEnv, io);
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        io.stdout(JSON.stringify({ error: toWireError(err) }));
        exitCode = 1;
        return;
      }
      const result = await runOneShot(kind, input, settingsOf(argv), io.env, loggerOf(argv));
      io.stdout(result.line);
      exitCode = result.exitCode;
    },
  });

  const parser = yargs(args)
    .scriptName('hsm-driver')
    .usage('$0 <command> [options]\n\nStateless PKCS#11 signer. The PIN comes from USER_PIN or --pin-file, never from a flag.')
    .command(
      'run',
      'poll the job API over mutual TLS and answer jobs until SIGTERM/SIGINT',
      (y) => withOptions(y, true),
      async (argv) => {
        exitCode = await runDriver(settingsOf(argv), io.env, loggerOf(argv), io.stopSignal());
      },
    )
    .command(oneShot('keygen', 'generate a key in the HSM, wrap it and store it (one job, one JSON line)'))
    .command(oneShot('sign', 'sign with a stored key (one job, one JSON line)'))
    .command(oneShot('health', 'report HSM, master key and database health (one job, one JSON line)'))
    .command('hsm <action>', 'inspect the HSM: list (slots, tokens, mechanisms) or test (login, master key, self-test per algorithm)', (y) =>
      withOptions(y).positional('action', { choices: ['list', 'test'] as const, demandOption: true }),
      async (argv) => {
        if (argv.action === 'list') {
          for (const line of hsmList(settingsOf(argv), io.env)) io.stdout(line);
          return;
        }
        const { lines, ok } = await hsmTest(settingsOf(argv), io.env, loggerOf(argv));
        for (const line of lines) io.stdout(line);
        exitCode = ok ? 0 : 1;
      },
    )
    .command(keysCommand(io, settingsOf, (code) => (exitCode = code)))
    .command(
      'audit <action>',
      'the audit trail: verify (every chain, and every seal inside the HSM; names the first bad record) or export (JSON lines)',
      (y) =>
        withOptions(y)
          .positional('action', { choices: ['verify', 'export'] as const, demandOption: true })
          .option('since', { type: 'string', describe: 'export: records at or after this time (ISO 8601)', group: 'Audit:' })
          .option('key-id', { type: 'string', describe: 'export: records of this keyId only', group: 'Audit:' })
          .option('out', { type: 'string', describe: 'export: write to this new file (never overwritten) instead of stdout', group: 'Audit:' }),
      async (argv) => {
        if (argv.action === 'export') {
          const count = await auditExport(settingsOf(argv), io.env, { since: argv.since, keyId: argv['key-id'], out: argv.out }, io.stdout);
          io.stderr(`audit export: ${count} records`);
          return;
        }
        const { lines, ok } = await auditVerify(settingsOf(argv), io.env, loggerOf(argv));
        for (const line of lines) io.stdout(line);
        exitCode = ok ? 0 : 1;
      },
    )
    .command(serviceCommand(io, (code) => (exitCode = code)))
    .command(
      'config <action>',
      'check: print the effective configuration (with sources) and check PIN file, key, certificates, module and token; init: write a commented example file',
      (y) =>
        withOptions(y, true)
          .positional('action', { choices: ['check', 'init'] as const, demandOption: true })
          .option('out', { type: 'string', default: 'hsm-driver.yaml', describe: 'config init: the file to write', group: 'Config:' }),
      (argv) => {
        if (argv.action === 'init') return void io.stdout(configInit(String(argv.out)));
        const report = configCheck(argv, io.env);
        for (const line of report.lines) io.stdout(line);
        exitCode = report.ok ? 0 : 1;
      },
    )
    .command('version', 'print the driver version and what this build is made of (exit 1 if its native addon cannot load)', {}, () => {
      for (const line of versionLines()) io.stdout(line);
      // A binary whose addon cannot load must fail its own smoke test.
      if (addonOrigin()?.startsWith('unavailable')) exitCode = 1;
    })
    .demandCommand(1, 'name a command; see --help')
    .strict()
    .version(false)
    .help()
    .wrap(Math.min(110, process.stdout.columns || 110))
    .fail((msg, err) => {
      throw err ?? new ConfigError(msg);
    });

  try {
    await parser.parseAsync();
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr(`hsm-driver: ${err.message}`);
      return 2;
    }
    io.stderr(`hsm-driver: ${toWireError(err).message}`);
    return 1;
  }
  return exitCode;
}
