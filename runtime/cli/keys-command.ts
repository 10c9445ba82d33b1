// `hsm-driver keys <action>`: commands over every stored key, run by an operator beside the
// drivers. Each opens the HSM and the store, does its work in pages, and reports in lines.
import type { Argv } from 'yargs';
import { resolveHsmConfig, resolveStoreOptions, type Settings } from '../config.js';
import { Hsm } from '../hsm/hsm.js';
import { sealRows } from '../keys/seal.js';
import { createLogger } from '../log.js';
import { openStore } from '../store/index.js';
import type { WrappedKeyStore } from '../store/store.js';
import { withOptions } from './options.js';
import type { Io } from './cli.js';

async function withHsmAndStore<T>(settings: Settings, io: Io, fn: (hsm: Hsm, store: WrappedKeyStore) => Promise<T>): Promise<T> {
  const log = createLogger(settings['log-level']);
  const hsm = await Hsm.open(resolveHsmConfig(settings, io.env), log);
  try {
    const store = await openStore(resolveStoreOptions(settings, io.env));
    try {
      return await fn(hsm, store);
    } finally {
      await store.close();
    }
  } finally {
    await hsm.close();
  }
}

export function keysCommand(io: Io, settingsOf: (argv: Record<string, unknown>) => Settings, setExit: (code: number) => void) {
  return {
    command: 'keys <action>',
    describe: 'commands over every stored key: seal (give rows written before row seals their HSM seal; idempotent, resumable)',
    builder: (y: Argv) => withOptions(y).positional('action', { choices: ['seal'] as const, demandOption: true }),
    handler: async (argv: Record<string, unknown>) => {
      const settings = settingsOf(argv);
      const stop = io.stopSignal();
      const report = await withHsmAndStore(settings, io, (hsm, store) =>
        sealRows(hsm, store, createLogger(settings['log-level']), (r) => io.stderr(`keys seal: ${r.sealed} sealed, ${r.alreadySealed} already sealed so far`), stop),
      );
      io.stdout(`keys seal: ${report.sealed} rows sealed, ${report.alreadySealed} already sealed, ${report.changed} changed while sealing${report.changed ? ' (run again)' : ''}${stop.aborted ? '; stopped early: run again to finish' : ''}`);
      setExit(report.changed > 0 || stop.aborted ? 1 : 0);
    },
  };
}
