// The configuration flags as yargs options, shared by every command that takes them.
import type { Argv } from 'yargs';
import { OPTIONS, type OptionSpec } from '../config.js';

/** Groups of flags only the long-running driver takes. */
const RUN_ONLY = new Set(['Job API', 'Probes']);

/** Adds the configuration flags; the driver's own only where `jobApi` (run, service install/run). */
export function withOptions<T>(y: Argv<T>, jobApi = false): Argv<T> {
  for (const [name, spec] of Object.entries(OPTIONS) as Array<[string, OptionSpec]>) {
    if (RUN_ONLY.has(spec.group) && !jobApi) continue;
    y = y.option(name, { type: spec.type, describe: `${spec.describe} [env ${spec.env}]`, group: `${spec.group}:` });
  }
  return y.option('config', { type: 'string', describe: 'YAML or JSON file of settings, keyed by these flags\' names; flag > env > file [env CONFIG_FILE]', group: 'Config:' });
}
