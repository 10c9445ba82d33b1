// The configuration file (--config FILE or CONFIG_FILE): YAML or JSON, the flags' own names as
// keys. It sits under the environment and the flags (flag > env > file), so a mounted file sets
// defaults an operator can still override at the service or container level.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { ConfigError } from './errors.js';

/** Keys a config file may not hold: the PIN is never written into a shared settings file. */
const FORBIDDEN = new Set(['pin', 'user-pin', 'USER_PIN']);

/** Reads `path` into option name → value, refusing names not in `known`; one-line errors. */
export function readConfigFile(path: string, known: readonly string[]): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let doc: unknown;
  try {
    // YAML 1.2 is a superset of JSON: one parser reads both.
    doc = parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${path} must be a mapping of option names to values`);
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (FORBIDDEN.has(key)) throw new ConfigError(`config file ${path}: the PIN does not belong in a config file; use pin-file or USER_PIN`);
    // A key that is no option's shape is not echoed: a PIN file given as --config would show its PIN.
    const shown = /^[A-Za-z][A-Za-z0-9_-]{0,40}$/.test(key) ? `"${key}"` : '(not an option name; is this the right file?)';
    if (!known.includes(key)) throw new ConfigError(`config file ${path}: unknown option ${shown}; options are the flags' names: ${known.join(', ')}`);
    if (value === null || value === undefined) continue;
    if (typeof value === 'object') throw new ConfigError(`config file ${path}: option "${key}" must be a string or a number`);
    out[key] = String(value);
  }
  return out;
}
