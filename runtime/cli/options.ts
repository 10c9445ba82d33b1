// The configuration flags as yargs options, shared by every command that takes them.
import type { Argv } from 'yargs';
import { OPTIONS, type OptionSpec } from '../config.js';

/** Adds the configuration flags; the job API's only where `jobApi` (run, service install/run). */
export function withOptions<T>(y: Argv<T>, jobApi = false): Argv<T> {
  for (const [name, spec] of Object.entries(OPTIONS) as Array<[string, OptionSpec]>) {
    if (spec.group === 'Job API' && !jobApi) continue;
    y = y.option(name, { type: spec.type, describe: `${spec.describe} [env ${spec.env}]`, group: `${spec.group}:` });
  }
  return y;
}
