// `hsm-driver keys <action>`: commands over every stored key, run by an operator beside the
// drivers. Each action is one entry of ACTIONS (its flags and a run function returning the exit
// code); the work itself is in runtime/keys/. They go in pages, show progress on stderr, stop
// between pages on the first Ctrl-C or SIGTERM and say how to resume.
import type { Logger } from 'pino';
import type { Argv } from 'yargs';
import { resolveHsmConfig, resolveStoreOptions, type Settings } from '../config.js';
import { Hsm } from '../hsm/hsm.js';
import { exportKeys, exportReportLines } from '../keys/export.js';
import { importKeys, importReportLines } from '../keys/import.js';
import { progressReporter, type Progress } from '../keys/progress.js';
import { rewrapReportLines, rewrapRows } from '../keys/rewrap.js';
import { sealRows } from '../keys/seal.js';
import { parseSample, verifyKeys, verifyReportLines } from '../keys/verify.js';
import { createLogger } from '../log.js';
import { openStore } from '../store/index.js';
import type { WrappedKeyStore } from '../store/store.js';
import { withOptions } from './options.js';
import type { Io } from './cli.js';

/** The exit code of a command stopped by a signal before it finished (as shells report SIGINT). */
export const STOPPED_EXIT = 130;

interface ActionContext {
  argv: Record<string, unknown>;
  settings: Settings;
  io: Io;
  log: Logger;
  /** Aborts on the first SIGINT/SIGTERM; actions check it between pages. */
  stop: AbortSignal;
  progress: (command: string) => Progress;
}

interface KeysAction {
  /** The yargs command after `keys`, with its positionals: 'import <file>'. */
  command: string;
  describe: string;
  options?: (y: Argv) => Argv;
  /** Does the work and prints the report; returns the exit code. */
  run(ctx: ActionContext): Promise<number>;
}

async function withStore<T>(ctx: ActionContext, fn: (store: WrappedKeyStore) => Promise<T>): Promise<T> {
  const store = await openStore(resolveStoreOptions(ctx.settings, ctx.io.env));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function withHsmAndStore<T>(ctx: ActionContext, fn: (hsm: Hsm, store: WrappedKeyStore) => Promise<T>): Promise<T> {
  const hsm = await Hsm.open(resolveHsmConfig(ctx.settings, ctx.io.env), ctx.log);
  try {
    return await withStore(ctx, (store) => fn(hsm, store));
  } finally {
    await hsm.close();
  }
}

const print = (io: Io, lines: readonly string[]) => lines.forEach((line) => io.stdout(line));

const seal: KeysAction = {
  command: 'seal',
  describe: 'give rows written before row seals their HSM seal (idempotent, resumable, audited)',
  run: (ctx) =>
    withHsmAndStore(ctx, async (hsm, store) => {
      const progress = ctx.progress('keys seal');
      progress.start(await store.countKeys());
      const report = await sealRows(hsm, store, ctx.log, (r) => progress.update(r.sealed + r.alreadySealed + r.changed, { changed: r.changed }), ctx.stop).finally(() => progress.stop());
      const stopped = ctx.stop.aborted ? '; stopped early: run it again to finish (sealed rows are skipped)' : '';
      ctx.io.stdout(`keys seal: ${report.sealed} rows sealed, ${report.alreadySealed} already sealed, ${report.changed} changed while sealing${report.changed ? ' (run again)' : ''}${stopped}`);
      return ctx.stop.aborted ? STOPPED_EXIT : report.changed > 0 ? 1 : 0;
    }),
};

const exportAction: KeysAction = {
  command: 'export',
  describe: 'write every key row (public data and wrapped blobs, nothing secret) to a new file as JSON lines with a checksum; needs no HSM',
  options: (y) => y.option('out', { type: 'string', demandOption: true, describe: 'the file to create (never overwritten; mode 0600)', group: 'Keys:' }),
  run: (ctx) =>
    withStore(ctx, async (store) => {
      const out = String(ctx.argv.out);
      const report = await exportKeys(store, out, { stop: ctx.stop, progress: ctx.progress('keys export') });
      print(ctx.io, exportReportLines(report, out));
      return report.stopped ? STOPPED_EXIT : 0;
    }),
};

const importAction: KeysAction = {
  command: 'import <file>',
  describe: 'add the rows of a keys export the store lacks: checksum first, seals checked in the HSM, identical rows skipped; a keyId stored with other content refuses the whole import (nothing is ever overwritten)',
  options: (y) =>
    y
      .positional('file', { type: 'string', describe: 'a file written by keys export' })
      .option('reseal', { type: 'boolean', default: false, describe: "seal rows from another token (or unsealed) under this token's integrity key, once a test sign proves each usable here", group: 'Keys:' }),
  run: (ctx) =>
    withHsmAndStore(ctx, async (hsm, store) => {
      const file = String(ctx.argv.file);
      const report = await importKeys(hsm, store, file, ctx.log, { reseal: ctx.argv.reseal === true, stop: ctx.stop, progress: (pass) => ctx.progress(pass === 'check' ? 'keys import (check)' : 'keys import') });
      const { lines, ok } = importReportLines(report, file, hsm);
      print(ctx.io, lines);
      return report.stopped ? STOPPED_EXIT : ok ? 0 : 1;
    }),
};

const verify: KeysAction = {
  command: 'verify',
  describe: 'DR drill: unwrap and sign with every stored key (or a sample) in this HSM and verify each signature against the stored public key; exit 1 if any fails',
  options: (y) =>
    y
      .option('sample', { type: 'string', describe: 'check a random sample: a number of keys (50), a fraction (0.1) or a percentage (10%)', group: 'Keys:' })
      .option('after', { type: 'string', describe: 'start after this keyId (to resume a stopped run)', group: 'Keys:' }),
  run: (ctx) => {
    const sample = typeof ctx.argv.sample === 'string' ? parseSample(ctx.argv.sample) : undefined;
    const after = typeof ctx.argv.after === 'string' ? ctx.argv.after : undefined;
    return withHsmAndStore(ctx, async (hsm, store) => {
      const report = await verifyKeys(hsm, store, ctx.log, { sample, after, stop: ctx.stop, progress: ctx.progress('keys verify') });
      const { label, serial } = hsm.pool.tokenInfo;
      print(ctx.io, verifyReportLines(report, `"${label}" serial ${serial}, ${store.kind} store`));
      return report.stopped ? STOPPED_EXIT : report.failed > 0 || report.brokenBy ? 1 : 0;
    });
  },
};

const rewrap: KeysAction = {
  command: 'rewrap',
  describe: 'master-key rotation: re-wrap every stored blob inside the HSM under another master key and/or wrap mechanism, while drivers keep signing (resumable; each row with its audit record)',
  options: (y) =>
    y
      .option('to-master-key', { type: 'string', describe: 'label of the master key to move rows to (on this token beside the old one)', group: 'Keys:' })
      .option('to-mechanism', { type: 'string', describe: 'wrap mechanism to move rows to (aes-key-wrap-pad, aes-kwp, aes-key-wrap or an id)', group: 'Keys:' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'report what would move, change nothing', group: 'Keys:' }),
  run: (ctx) =>
    withHsmAndStore(ctx, async (hsm, store) => {
      const options = { toMasterKey: ctx.argv['to-master-key'] as string | undefined, toMechanism: ctx.argv['to-mechanism'] as string | undefined, dryRun: ctx.argv['dry-run'] === true };
      const progress = ctx.progress(options.dryRun ? 'keys rewrap (dry run)' : 'keys rewrap');
      progress.start(await store.countKeys());
      const report = await rewrapRows(hsm, store, ctx.log, options, (r) => progress.update(r.rewrapped + r.alreadyDone + r.resident + r.changed + r.failed.length + (options.dryRun ? Object.values(r.moves).reduce((a, b) => a + b, 0) : 0), { failed: r.failed.length }), ctx.stop).finally(() => progress.stop());
      print(ctx.io, rewrapReportLines(report, options.dryRun, ctx.stop.aborted));
      return ctx.stop.aborted ? STOPPED_EXIT : report.failed.length > 0 || report.changed > 0 ? 1 : 0;
    }),
};

/** Every action, one entry each: adding one is adding its entry. */
const ACTIONS: readonly KeysAction[] = [seal, rewrap, exportAction, importAction, verify];

export function keysCommand(io: Io, settingsOf: (argv: Record<string, unknown>) => Settings, setExit: (code: number) => void) {
  return {
    command: 'keys',
    describe: `commands over every stored key: ${ACTIONS.map((a) => a.command.split(' ')[0]).join(', ')} (see keys <action> --help)`,
    builder: (y: Argv) => {
      for (const action of ACTIONS) {
        y = y.command(
          action.command,
          action.describe,
          (sub: Argv) => (action.options ? action.options(withOptions(sub)) : withOptions(sub)),
          async (argv: Record<string, unknown>) => {
            const settings = settingsOf(argv);
            const log = createLogger(settings['log-level']);
            const ctx: ActionContext = { argv, settings, io, log, stop: io.stopSignal(), progress: (name) => progressReporter(name, log, io.terminal) };
            setExit(await action.run(ctx));
          },
        );
      }
      return y.demandCommand(1, `name an action: ${ACTIONS.map((a) => a.command.split(' ')[0]).join(', ')}`);
    },
    handler: () => {},
  };
}
