// The built CLI as an operator and a calling script meet it: one JSON line per job from any
// input source, logs only on stderr, no PIN anywhere, exit 2 on bad configuration, the weak
// master key warning, and the `hsm list` / `hsm test` / `version` commands.
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAnswer, PROTOCOL_ALGORITHMS, tokenEnv, tokenPin, useCli, type RunOptions } from '../../support/cli.js';

const cli = useCli();
const freshId = (what: string) => `k_${what}.${randomBytes(4).toString('hex')}`;
const keygenJson = (keyId: string) => JSON.stringify({ keyId, algorithm: 'ecdsa-p256' });
const stderrLines = (stderr: string) => stderr.split('\n').filter((l) => l !== '');

describe('one-shot output contract', () => {
  const sources: Array<[string, (json: string) => { args?: string[] } & RunOptions]> = [
    ['--input', (json) => ({ args: ['--input', json] })],
    ['--input-file', (json) => ({ args: ['--input-file', written(json)] })],
    ['stdin', (json) => ({ stdin: json })],
    ['JOB_INPUT', (json) => ({ env: { JOB_INPUT: json } })],
    ['JOB_INPUT_FILE', (json) => ({ env: { JOB_INPUT_FILE: written(json) } })],
  ];
  function written(json: string): string {
    const path = cli.path('input.json');
    writeFileSync(path, json);
    return path;
  }

  it.each(sources)('reads the job from %s and answers one JSON line, exit 0', (_, source) => {
    const keyId = freshId('src');
    const { args = [], ...opts } = source(keygenJson(keyId));
    const res = cli.run(['keygen', ...cli.sqlite(), ...args], opts);
    expect(res.status).toBe(0);
    expect(res.stdout.split('\n')).toHaveLength(2); // one line and its newline
    expect(parseAnswer(res).output).toMatchObject({ keyId, algorithm: 'ecdsa-p256' });
  });

  it('--input wins over JOB_INPUT and stdin', () => {
    const [flag, env, stdin] = [freshId('flag'), freshId('env'), freshId('stdin')];
    const res = cli.run(['keygen', ...cli.sqlite(), '--input', keygenJson(flag)], { env: { JOB_INPUT: keygenJson(env) }, stdin: keygenJson(stdin) });
    expect(parseAnswer(res).output?.keyId).toBe(flag);
  });

  it('an error is one JSON line {"error": {code, message, retryable}}, exit 1', () => {
    const res = cli.run(['sign', ...cli.sqlite(), '--input', JSON.stringify({ keyId: 'absent', data: '00'.repeat(32), encoding: 'digest' })]);
    expect(res.status).toBe(1);
    expect(res.stdout.split('\n')).toHaveLength(2);
    const answer = JSON.parse(res.stdout);
    expect(Object.keys(answer)).toEqual(['error']);
    expect(Object.keys(answer.error).sort()).toEqual(['code', 'message', 'retryable']);
    expect(answer.error).toMatchObject({ code: 'KEY_NOT_FOUND', retryable: false });
  });

  it('logs go to stderr as JSON lines, even at trace level', () => {
    const res = cli.run(['keygen', ...cli.sqlite(), '--log-level', 'trace', '--input', keygenJson(freshId('log'))], { token: 'weak' });
    expect(parseAnswer(res).output).toBeDefined();
    const logs = stderrLines(res.stderr);
    expect(logs.length).toBeGreaterThan(0); // the weak token's warning at least
    for (const line of logs) expect(JSON.parse(line)).toMatchObject({ level: expect.any(String), msg: expect.any(String) });
  });
});

describe('weak master key (made without --private)', () => {
  const privateWarning = (stderr: string) =>
    stderrLines(stderr).some((l) => l.startsWith('{') && JSON.parse(l).level === 'warn' && l.includes('CKA_PRIVATE'));

  it('hsm test warns on stderr naming CKA_PRIVATE, and every algorithm still works', () => {
    const res = cli.run(['hsm', 'test'], { token: 'weak' });
    expect(privateWarning(res.stderr)).toBe(true);
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^master key posture: WEAK: CKA_PRIVATE is false/m);
    expect(cli.run(['hsm', 'test'], { token: 'good' }).stdout).toMatch(/^master key posture: ok/m);
  });

  it('a one-shot warns on the weak token and answers; the good token does not warn', () => {
    const weak = cli.job('keygen', { keyId: freshId('weak'), algorithm: 'ecdsa-secp256k1' }, { token: 'weak', store: cli.sqlite() });
    expect(weak.output).toBeDefined();
    expect(privateWarning(weak.stderr)).toBe(true);
    const good = cli.job('keygen', { keyId: freshId('good'), algorithm: 'ecdsa-secp256k1' }, { token: 'good', store: cli.sqlite() });
    expect(good.output).toBeDefined();
    expect(good.stderr).not.toContain('CKA_PRIVATE');
  });
});

describe('the PIN', () => {
  it('shows in no output or log of keygen, sign, health, hsm test or a wrong-PIN run, at trace level', () => {
    const pin = tokenPin('good');
    const wrong = 'wrong-pin-123456';
    const viaEnv = (p: string): RunOptions => ({ env: { USER_PIN: p, USER_PIN_FILE: undefined } });
    const store = [...cli.sqlite(), '--log-level', 'trace'];
    const keyId = freshId('pin');
    const runs = {
      keygen: cli.run(['keygen', ...store, '--input', keygenJson(keyId)], viaEnv(pin)),
      sign: cli.run(['sign', ...store, '--input', JSON.stringify({ keyId, data: 'ab'.repeat(32), encoding: 'digest' })], viaEnv(pin)),
      health: cli.run(['health', ...store, '--input', '{}'], viaEnv(pin)),
      hsmTest: cli.run(['hsm', 'test', '--log-level', 'trace'], viaEnv(pin)),
      wrongKeygen: cli.run(['keygen', ...store, '--input', keygenJson(freshId('wrong'))], viaEnv(wrong)),
      wrongHsmTest: cli.run(['hsm', 'test', '--log-level', 'trace'], viaEnv(wrong)),
    };
    // They ran as meant: with the PIN they succeed, with the wrong one they fail.
    expect(Object.values(runs).map((r) => r.status)).toEqual([0, 0, 0, 0, 1, 1]);
    expect(parseAnswer(runs.health).output?.ok).toBe(true);
    for (const [name, r] of Object.entries(runs)) {
      expect(r.stdout + r.stderr, name).not.toContain(pin);
      expect(r.stdout + r.stderr, name).not.toContain(wrong);
    }
  });
});

describe('configuration errors exit 2 with one line on stderr', () => {
  const openPinFile = () => {
    const path = cli.path('user.pin');
    writeFileSync(path, 'group-readable-pin\n');
    chmodSync(path, 0o644);
    return path;
  };
  const cases: Array<[string, () => { args?: string[]; env?: RunOptions['env'] }, RegExp]> = [
    ['a PIN file open to group and others', () => ({ args: ['--pin-file', openPinFile()] }), /user\.pin.*chmod 600/],
    ['a token label no token has', () => ({ args: ['--token-label', 'no-such-token-label'] }), /"no-such-token-label"/],
    ['a PKCS#11 module that does not exist', () => ({ args: ['--pkcs11-module', '/nonexistent.so'] }), /\/nonexistent\.so/],
    ['an unknown resident algorithm', () => ({ env: { RESIDENT_ALGORITHMS: 'eddsa-ed448' } }), /"eddsa-ed448"/],
    ['an input file that does not exist', () => ({ args: ['--input-file', '/nonexistent/input.json'] }), /\/nonexistent\/input\.json/],
    ['an unknown flag', () => ({ args: ['--help-me'] }), /help-me/],
  ];

  it.each(cases)('%s', (_, setup, says) => {
    const { args = [], env } = setup();
    const res = cli.run(['keygen', ...cli.sqlite(), ...args], { env, stdin: keygenJson(freshId('cfg')) });
    expect(res.status).toBe(2);
    expect(res.stdout).toBe('');
    expect(stderrLines(res.stderr)).toEqual([expect.stringMatching(/^hsm-driver: /)]);
    expect(res.stderr).toMatch(says);
    expect(res.stderr).not.toContain('group-readable-pin');
  });
});

describe('hsm and version commands', () => {
  it('hsm list shows the token by label, with CKM_AES_KEY_WRAP_PAD supported', () => {
    const res = cli.run(['hsm', 'list']);
    expect(res.status).toBe(0);
    const lines = res.stdout.split('\n');
    const at = lines.findIndex((l) => l.includes(`token "${tokenEnv('good').TOKEN_LABEL}"`));
    expect(at).toBeGreaterThanOrEqual(0);
    expect(lines[at + 1]).toMatch(/mechanisms:.*\bCKM_AES_KEY_WRAP_PAD yes\b/);
  });

  it('hsm test logs in and passes a row per algorithm, Ed25519 resident', () => {
    const res = cli.run(['hsm', 'test']);
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`^login ok; token "${tokenEnv('good').TOKEN_LABEL}"`));
    for (const algorithm of PROTOCOL_ALGORITHMS) {
      const mode = algorithm === 'eddsa-ed25519' ? 'resident' : 'wrapped';
      expect(res.stdout).toMatch(new RegExp(`^${algorithm} +${mode} +ok `, 'm'));
    }
  });

  it('hsm test without --resident-algorithms reports Ed25519 unsupported, with the hint', () => {
    const res = cli.run(['hsm', 'test'], { env: { RESIDENT_ALGORITHMS: undefined } });
    expect(res.stdout).toMatch(/^eddsa-ed25519 +unsupported .*--resident-algorithms/m);
    expect(res.stdout).toMatch(/^ecdsa-p256 +wrapped +ok /m);
  });

  it('the bundle is self-contained: it runs from outside the repository, with no node_modules to fall back on', () => {
    // The bundle lives in a temp dir; with NODE_PATH cleared nothing outside it can resolve.
    for (const args of [['version'], ['hsm', 'list']]) {
      const res = cli.run(args, { env: { NODE_PATH: undefined } });
      expect(res.stderr).toBe('');
      expect(res.status).toBe(0);
    }
  });

  it('version prints the package version', () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', '..', 'package.json'), 'utf8'));
    const res = cli.run(['version']);
    expect(res.status).toBe(0);
    expect(res.stdout.split('\n')[0]).toBe(`hsm-driver ${version}`);
    expect(res.stdout).toMatch(/^node: v24\./m);
    expect(res.stdout).toMatch(/^sqlite: 3\.\d+/m);
  });
});
