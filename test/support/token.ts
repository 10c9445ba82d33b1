// A SoftHSM token of a test's own (scripts/dev-hsm.sh in a temp dir), for tests that add or delete
// keys on it, and pkcs11-tool against it, logged in with its PIN file.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readEnvFile } from './global-setup.js';

const root = join(import.meta.dirname, '..', '..');

/**
 * Makes the token in `dir` (or adds to it: dev-hsm.sh is idempotent, so MASTER_KEY_LABEL=NEW
 * adds a second master key, the first step of a rotation) and returns the variables selecting it.
 */
export function ownToken(dir: string, label: string, env: Record<string, string> = {}): Record<string, string> {
  const envFile = execFileSync('bash', [join(root, 'scripts/dev-hsm.sh'), dir], { env: { ...process.env, TOKEN_LABEL: label, ...env }, encoding: 'utf8' }).trim();
  return readEnvFile(envFile);
}

/** pkcs11-tool on the token `env` selects, logged in as the user. */
export function pkcs11Tool(env: Record<string, string>, args: string[]): string {
  const pin = readFileSync(env.USER_PIN_FILE!, 'utf8').trim();
  return execFileSync('pkcs11-tool', ['--module', env.PKCS11_MODULE!, '--token-label', env.TOKEN_LABEL!, '--login', '--pin', pin, ...args], {
    env: { ...process.env, SOFTHSM2_CONF: env.SOFTHSM2_CONF! },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
