// `run --metrics-addr`: /metrics scraped and read by a real Prometheus text parser after jobs;
// /livez; /readyz never ready before the first check, 503 while the token is missing, and 200
// again within one health interval after it returns.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// The parser Prometheus' own JavaScript tooling uses for the text exposition format.
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, describe, expect, test } from 'vitest';
import { readEnvFile } from '../../support/global-setup.js';
import { TARGETS, spawnDriver, stateIs, useRunFixture, type LogLine } from '../../support/driver.js';

const fx = useRunFixture('run-probes', ['driver']);
const dir = mkdtempSync(join(tmpdir(), 'run-probes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Family = { name: string; type: string; metrics: Array<{ labels?: Record<string, string>; value?: string }> };
interface Scrape {
  families: Map<string, Family>;
  /** A histogram's observation count for one label set (this parser folds labelled histograms into one, so read the _count line). */
  count(name: string, labels: Record<string, string>): number;
}
async function scrape(base: string): Promise<Scrape> {
  const res = await fetch(`${base}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const families = new Map((parsePrometheusTextFormat(text) as Family[]).map((f) => [f.name, f]));
  return {
    families,
    count(name, labels) {
      const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
      const line = text.split('\n').find((l) => l.startsWith(`${name}_count{`) && wanted.every((w) => l.includes(w)));
      return Number(line?.split(' ').at(-1));
    },
  };
}
const sample = (f: Family | undefined, labels: Record<string, string> = {}) =>
  f?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
const served = (l: LogLine) => l.msg === 'serving /metrics, /livez and /readyz';

describe.each(TARGETS)('run --metrics-addr as the %s', (target) => {
  test('metrics after jobs; /livez; /readyz follows the token going away and coming back', { timeout: 90_000 }, async () => {
    // A token of this test's own, whose storage is taken away under the driver.
    const envFile = execFileSync('bash', [join(import.meta.dirname, '../../../scripts/dev-hsm.sh'), join(dir, target)], {
      env: { ...process.env, TOKEN_LABEL: `hsm-driver-probes-${target}` },
      encoding: 'utf8',
    }).trim();
    fx.driver = spawnDriver({ target, pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), env: readEnvFile(envFile), args: ['--metrics-addr', '127.0.0.1:0'] });
    const base = `http://${(await fx.driver.waitForLog(served)).address as string}`;
    await fx.driver.waitForLog(stateIs('running'));
    expect(await (await fetch(`${base}/livez`)).text()).toBe('ok\n');
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    await fx.server.waitForCompletion(fx.server.enqueue('keygen', { keyId: 'probe.k', algorithm: 'ecdsa-secp256k1' }), 20_000);
    await fx.server.waitForCompletion(fx.server.enqueue('sign', { keyId: 'probe.k', data: '44'.repeat(32), encoding: 'digest' }), 20_000);
    await fx.server.waitForCompletion(fx.server.enqueue('sign', { keyId: 'probe.absent', data: '44'.repeat(32), encoding: 'digest' }), 20_000);
    const scraped = await scrape(base);
    const m = scraped.families;
    expect(sample(m.get('hsm_driver_jobs_total'), { kind: 'keygen', outcome: 'ok' })?.value).toBe('1');
    expect(sample(m.get('hsm_driver_jobs_total'), { kind: 'sign', outcome: 'ok' })?.value).toBe('1');
    expect(sample(m.get('hsm_driver_jobs_total'), { kind: 'sign', outcome: 'KEY_NOT_FOUND' })?.value).toBe('1');
    expect(m.get('hsm_driver_job_duration_seconds')?.type).toBe('HISTOGRAM');
    expect(scraped.count('hsm_driver_job_duration_seconds', { kind: 'sign' })).toBe(2);
    for (const fn of ['C_GenerateKeyPair', 'C_WrapKey', 'C_UnwrapKey', 'C_Sign']) expect(scraped.count('hsm_driver_hsm_call_duration_seconds', { function: fn })).toBeGreaterThanOrEqual(1);
    expect(Number(sample(m.get('hsm_driver_polls_total'), { result: 'job' })?.value)).toBe(3);
    expect(sample(m.get('hsm_driver_state'), { state: 'running' })?.value).toBe('1');
    expect(sample(m.get('hsm_driver_keys_stored'))?.value).toBe('1');
    // Every keygen and sign (the failed one too) left a record the HSM sealed.
    expect(sample(m.get('hsm_driver_audit_records'), { sealed: 'yes' })?.value).toBe('3');
    expect(sample(m.get('hsm_driver_audit_records'), { sealed: 'no' })?.value).toBe('0');
    expect(sample(m.get('hsm_driver_jobs_in_flight'))?.value).toBe('0');
    expect(m.has('hsm_driver_sessions_in_use')).toBe(true);
    expect(m.has('hsm_driver_process_resident_memory_bytes')).toBe(true);
    expect([...m.keys()].join('\n')).not.toMatch(/pin/i);

    const tokens = join(dir, target, 'tokens');
    renameSync(tokens, `${tokens}.away`);
    try {
      await fx.driver.waitForLog(stateIs('degraded'), 10_000);
      const down = await fetch(`${base}/readyz`);
      expect(down.status).toBe(503);
      expect(await down.text()).toMatch(/^not ready: hsm: /);
      expect(sample((await scrape(base)).families.get('hsm_driver_state'), { state: 'degraded' })?.value).toBe('1');
    } finally {
      renameSync(`${tokens}.away`, tokens);
    }
    // --health-interval 1 (the fixture's): ready again within about a second once the probe passes.
    const back = Date.now();
    let status = 0;
    while (status !== 200 && Date.now() - back < 10_000) {
      status = (await fetch(`${base}/readyz`)).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    console.info(`/readyz 200 again ${Date.now() - back} ms after the token came back`);
  });
});

test('a --metrics-addr that is not host:port, or taken, is refused at start with one line', async () => {
  for (const [addr, line] of [
    ['9464', /^hsm-driver: --metrics-addr must be host:port/],
    [fx.server.proxyAddr, /^hsm-driver: cannot listen on --metrics-addr .*EADDRINUSE/],
  ] as const) {
    const d = spawnDriver({ pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), args: ['--metrics-addr', addr] });
    expect(await d.exited).toBe(2);
    expect(d.stderr().split('\n').filter((l) => l.startsWith('hsm-driver:'))[0]).toMatch(line);
  }
});

test('a token without the integrity key: the driver starts, warns loudly with the ceremony command, and health reports it', async () => {
  const d = spawnDriver({ pki: fx.pki, proxyAddr: fx.server.proxyAddr, sqlitePath: fx.freshDb(), args: ['--integrity-key-label', 'not-made-yet'] });
  try {
    const warning = await d.waitForLog((l) => l.msg === 'INTEGRITY KEY MISSING: nothing can be sealed');
    expect(warning).toMatchObject({ level: 'warn', reason: expect.stringMatching(/make it at the key ceremony: pkcs11-tool .*--label not-made-yet/) });
    await d.waitForLog(stateIs('running'));
    const job = await fx.server.waitForCompletion(fx.server.enqueue('health', {}), 20_000);
    expect(job.result).toMatchObject({ ok: true, integrityKey: { ok: false, label: 'not-made-yet' } });
  } finally {
    await d.stop();
  }
});
