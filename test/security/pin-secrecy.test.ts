// The PIN never leaves the driver: not in its arguments or environment (/proc/PID/cmdline,
// /proc/PID/environ), its logs at trace level, its answers, /metrics and the probes, a
// diagnostic report (what Node writes on a crash, with the environment), or the text of any
// error or exit: a wrong PIN, a module, config file, certificate or key that is the PIN file
// itself, a token that is not there, a port taken. The PIN is random and of this file's own
// token, and is looked for whole, as hex, base64 and UTF-16, and as any 10 characters of it.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { useCli } from '../support/cli.js';
import { TARGETS, spawnDriver, stateIs, useRunFixture, type DriverProcess, type DriverTarget } from '../support/driver.js';
import { readEnvFile } from '../support/global-setup.js';
import { findPatterns, patternsFor } from '../support/secrets.js';

const fx = useRunFixture('pin-secrecy', ['driver']);
const cli = useCli();
const dir = mkdtempSync(join(tmpdir(), 'pin-secrecy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PIN = `Pq${randomBytes(15).toString('base64url')}`;
/** A wrong PIN that shares all but its last character with the real one: an echo of it shows. */
const WRONG_PIN = `${PIN.slice(0, -1)}${PIN.endsWith('x') ? 'y' : 'x'}`;
const PIN_PATTERNS = patternsFor('pin', Buffer.from(PIN), { pieces: 10, everyOffset: true });
const pinFile = join(dir, 'token', 'user.pin');
let token: Record<string, string>;

beforeAll(() => {
  // dev-hsm.sh keeps a user.pin that is already there: the token gets this file's PIN.
  mkdirSync(join(dir, 'token'), { mode: 0o700 });
  writeFileSync(pinFile, PIN, { mode: 0o600 });
  const envFile = execFileSync('bash', [join(import.meta.dirname, '../../scripts/dev-hsm.sh'), join(dir, 'token')], {
    env: { ...process.env, TOKEN_LABEL: `pin-secrecy-${process.pid}` },
    encoding: 'utf8',
  }).trim();
  token = readEnvFile(envFile);
  expect(readFileSync(token.USER_PIN_FILE!, 'utf8')).toBe(PIN);
});

/** The forms of the PIN found in `text`; [] when it is not there. */
const pinIn = (text: string | Buffer) => findPatterns(text, PIN_PATTERNS);

test('the search finds the PIN in each form it looks for (so an empty result means something)', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  expect(pinIn(`before ${PIN} after`)).toContain('pin:raw');
  expect(pinIn(`{"pin":"${PIN.slice(3, 15)}…"}`)).toContain('pin:piece@3');
  expect(pinIn(Buffer.from(PIN).toString('hex').toUpperCase())).toContain('pin:HEX');
  for (const prefix of ['', 'a', 'ab']) expect(pinIn(b64(`${prefix}${PIN}!`)).length, prefix).toBeGreaterThan(0);
  expect(pinIn(Buffer.from(`x${PIN}`, 'utf16le'))).toContain('pin:utf16');
  expect(pinIn(WRONG_PIN)).toContain('pin:piece@0');
  expect(pinIn('nothing secret here')).toEqual([]);
});

function start(target: DriverTarget, o: { env?: Record<string, string | undefined>; args?: string[] } = {}): DriverProcess {
  fx.driver = spawnDriver({ target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), args: o.args, env: { ...token, ...o.env } });
  return fx.driver;
}

const exited = async (d: DriverProcess) => ({ code: await d.exited, out: d.stderr() });

describe.each(TARGETS)('hsm-driver run as the %s', (target) => {
  test('PIN file, trace level, metrics: not in argv, environment, logs, answers, /metrics or the probes', { timeout: 120_000 }, async () => {
    const d = start(target, { env: { LOG_LEVEL: undefined }, args: ['--log-level', 'trace', '--metrics-addr', '127.0.0.1:0'] });
    const base = `http://${(await d.waitForLog((l) => l.msg === 'serving /metrics, /livez and /readyz')).address as string}`;
    await d.waitForLog(stateIs('running'));
    const pid = d.proc.pid!;
    expect(pinIn(readFileSync(`/proc/${pid}/cmdline`))).toEqual([]);
    expect(pinIn(readFileSync(`/proc/${pid}/environ`))).toEqual([]);
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).toContain(`USER_PIN_FILE=${pinFile}`);

    const key = `pin.${target}`;
    await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId: key, algorithm: 'ecdsa-secp256k1' }), 30_000);
    const ids = [
      fx.server.enqueue('keygen', { keyId: `${key}.ed`, algorithm: 'eddsa-ed25519' }),
      fx.server.enqueue('keygen', { keyId: key, algorithm: 'rsa-2048' }), // KEY_EXISTS
      fx.server.enqueue('sign', { keyId: key, data: '42'.repeat(32), encoding: 'digest' }),
      fx.server.enqueue('sign', { keyId: key, data: '42', encoding: 'digest' }), // INVALID_INPUT
      fx.server.enqueue('sign', { keyId: `${key}.none`, data: '42'.repeat(32), encoding: 'digest' }), // KEY_NOT_FOUND
      fx.server.enqueue('health', {}),
      fx.server.enqueue('decrypt', { pin: 'which?' }), // UNSUPPORTED_KIND
    ];
    const done = await Promise.all(ids.map((id) => fx.server.waitForCompletion(id, 30_000)));
    expect(done.map((j) => (j.error as { code?: string } | undefined)?.code ?? 'ok')).toEqual(['ok', 'KEY_EXISTS', 'ok', 'INVALID_INPUT', 'KEY_NOT_FOUND', 'ok', 'UNSUPPORTED_KIND']);
    expect(pinIn(JSON.stringify(fx.server.jobs()))).toEqual([]);

    for (const path of ['/metrics', '/readyz', '/livez']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(200);
      expect(pinIn(await res.text()), path).toEqual([]);
    }
    expect((await d.stop()).code).toBe(0);
    expect(d.logs.filter((l) => l.msg === 'job done').length).toBeGreaterThanOrEqual(ids.length + 1);
    expect(pinIn(d.stderr())).toEqual([]);
  });

  test('USER_PIN: not in argv or /proc/PID/environ, and gone from the environment a diagnostic report shows', { timeout: 120_000 }, async () => {
    const reports = mkdtempSync(join(dir, `report-${target}-`));
    const d = start(target, {
      env: { USER_PIN: PIN, USER_PIN_FILE: undefined, LOG_LEVEL: 'trace', NODE_OPTIONS: `--report-on-signal --report-signal=SIGUSR2 --report-directory=${reports}` },
    });
    await d.waitForLog(stateIs('running'));
    expect(pinIn(readFileSync(`/proc/${d.proc.pid!}/cmdline`))).toEqual([]);
    // Linux shows the environment a process started with for its whole life, whatever unsetenv
    // did since: the driver blanks the value there too, so only the name is left.
    const environ = readFileSync(`/proc/${d.proc.pid!}/environ`);
    expect(environ.toString('latin1')).toMatch(/(^|\0)USER_PIN=\0*(\0|$)/);
    expect(pinIn(environ)).toEqual([]);
    await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId: `env.${target}`, algorithm: 'ecdsa-p256' }), 30_000);
    d.proc.kill('SIGUSR2');
    const report = await waitForFile(reports, '.json');
    // The report holds the environment, the command line and both stacks: the PIN is in none of them.
    expect(JSON.parse(report).environmentVariables).toMatchObject({ TOKEN_LABEL: token.TOKEN_LABEL });
    expect(JSON.parse(report).environmentVariables).not.toHaveProperty('USER_PIN');
    expect(pinIn(report)).toEqual([]);
    expect((await d.stop()).code).toBe(0);
    expect(pinIn(d.stderr())).toEqual([]);
  });

  test('a wrong PIN ends the driver with a reason and neither PIN', async () => {
    const d = start(target, { env: { USER_PIN: WRONG_PIN, USER_PIN_FILE: undefined, LOG_LEVEL: 'trace' } });
    const { code, out } = await exited(d);
    expect(code).not.toBe(0);
    expect(out).toMatch(/CKR_PIN_INCORRECT/);
    expect(pinIn(out)).toEqual([]);
  });

  test.each([
    ['--pkcs11-module', /cannot load PKCS#11 module/],
    ['--config', /config file .* must be a mapping/],
    ['--client-cert', /holds no PEM certificate/],
    ['--client-key', /not a readable unencrypted PEM private key/],
    ['--ca-cert', /holds no PEM certificate/],
  ])('%s naming the PIN file: refused without quoting it', async (flag, reason) => {
    const d = start(target, { args: [flag, pinFile], env: { LOG_LEVEL: 'trace' } });
    const { code, out } = await exited(d);
    expect(code).not.toBe(0);
    expect(out).toMatch(reason);
    expect(pinIn(out)).toEqual([]);
  });

  test('a token that is not there: errors while it waits, then a clean stop, without the PIN', async () => {
    const d = start(target, { env: { TOKEN_LABEL: 'no-such-token', LOG_LEVEL: 'trace' } });
    await d.waitForLog((l) => l.msg === 'hsm unavailable at start; will keep trying');
    await d.waitForLog(stateIs('degraded'));
    await d.stop();
    expect(pinIn(d.stderr())).toEqual([]);
  });

  test('a taken --metrics-addr ends the driver after it logged in, without the PIN', async () => {
    const taken = await listen();
    try {
      const d = start(target, { args: ['--metrics-addr', `127.0.0.1:${(taken.address() as { port: number }).port}`], env: { LOG_LEVEL: 'trace' } });
      const { code, out } = await exited(d);
      expect(code).not.toBe(0);
      expect(out).toMatch(/cannot listen on --metrics-addr/);
      expect(pinIn(out)).toEqual([]);
    } finally {
      taken.close();
    }
  });
});

describe('one-shot commands (the bundle)', () => {
  const own = () => ({ ...token });

  test.each([
    ['health', ['health', '--input', '{}']],
    ['keygen', ['keygen', '--input', '{"keyId":"os.k","algorithm":"ecdsa-p256"}']],
    ['hsm test', ['hsm', 'test']],
    ['hsm list', ['hsm', 'list']],
    ['config check', ['config', 'check']],
  ])('%s: the PIN in no output, from a file or from USER_PIN', (_name, args) => {
    for (const env of [own(), { ...own(), USER_PIN_FILE: undefined, USER_PIN: PIN }]) {
      const res = cli.run([...args, ...cli.sqlite()], { env: { ...env, LOG_LEVEL: 'trace' } });
      expect(res.status, res.stderr).toBeLessThan(2);
      expect(pinIn(res.stdout + res.stderr)).toEqual([]);
    }
  });

  test.each([
    ['a wrong PIN', { USER_PIN: WRONG_PIN, USER_PIN_FILE: undefined }, /PIN/],
    ['no such token', { TOKEN_LABEL: 'no-such-token' }, /no-such-token/],
    ['a module that is the PIN file', { PKCS11_MODULE: pinFile }, /cannot load PKCS#11 module/],
  ])('%s: the error names the problem, not the PIN', (_name, env, reason) => {
    const res = cli.run(['keygen', '--input', '{"keyId":"os.e","algorithm":"ecdsa-p256"}', ...cli.sqlite()], { env: { ...own(), ...env, LOG_LEVEL: 'trace' } });
    expect(res.status).not.toBe(0);
    expect(res.stdout + res.stderr).toMatch(reason);
    expect(pinIn(res.stdout + res.stderr)).toEqual([]);
  });

  test('a PIN file that others may read is refused, without quoting it', () => {
    const open = join(dir, 'open.pin');
    writeFileSync(open, PIN);
    chmodSync(open, 0o644);
    const res = cli.run(['health', '--input', '{}', ...cli.sqlite()], { env: { ...own(), USER_PIN_FILE: open } });
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/open to others/);
    expect(pinIn(res.stdout + res.stderr)).toEqual([]);
  });
});

function listen(): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function waitForFile(folder: string, suffix: string, timeoutMs = 20_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const name = readdirSync(folder).find((n) => n.endsWith(suffix));
    if (name) {
      const text = readFileSync(join(folder, name), 'utf8');
      try {
        JSON.parse(text);
        return text;
      } catch {
        // still being written
      }
    }
    if (Date.now() > end) throw new Error(`no ${suffix} file in ${folder} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
