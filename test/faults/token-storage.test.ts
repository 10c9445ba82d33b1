// The token's storage taken away under load and given back, twice (renaming the token directory
// of a token copy of this file's own: that is what makes SoftHSM fail at run time; chmod 000 does
// nothing to a driver running as root, and SOFTHSM2_CONF is only read at C_Initialize). Beyond
// test/runtime/driver/run-faults.test.ts and run-probes.test.ts (one idle outage): jobs in flight
// when it goes are answered with a retryable HSM_UNAVAILABLE, never a non-retryable code, /readyz
// follows both outages, and a client retrying ends with one key per keyId. Resident (Ed25519)
// keys are in the mix: nothing is killed here, so SoftHSM's token-object writes are not at risk.
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, expect, test } from 'vitest';
import { startJobServer, type JobServer, type JobView } from '../../scripts/job-server.js';
import { feed } from '../../scripts/soak/kill-loop.js';
import { Ledger, serverSink, WRAPPED_ALGORITHMS } from '../../scripts/soak/ledger.js';
import { makePki, serverTls, type Pki } from '../scripts/helpers.js';
import { spawnDriver, stateIs, type DriverProcess, type LogLine } from '../support/driver.js';
import { lookInside, ownToken, readyz, rowsAgainstReports, sleep, states, unseenLeases, waitFor } from '../support/faults.js';

const dir = mkdtempSync(join(tmpdir(), 'fault-token-'));
let pki: Pki;
let server: JobServer;
const running: DriverProcess[] = [];
const away: string[] = [];

beforeAll(async () => {
  pki = makePki('driver');
});
afterAll(async () => {
  pki?.remove();
  rmSync(dir, { recursive: true, force: true });
});
// A job server per test: a job a failed test left queued must not reach the next test's driver.
beforeEach(async () => {
  server = await startJobServer({ ...serverTls(pki), leaseSeconds: 5 });
});
afterEach(async () => {
  // Drivers first: one left running by a failed test would hold the token directory and its leases.
  await Promise.all(running.splice(0).map((d) => d.stop()));
  for (const tokens of away.splice(0)) renameSync(`${tokens}.away`, tokens);
  await server?.close();
});

/** A token of its own in `name`, and a driver on it; returns the driver and its token directory. */
function startOn(name: string, args: string[] = []): { d: DriverProcess; tokens: string } {
  const token = ownToken(join(dir, name), `hsm-driver-${name}`);
  const d = spawnDriver({ pki, proxyAddr: server.proxyAddr, sqlitePath: join(dir, `${name}.db`), env: { ...token, LOG_LEVEL: 'info' }, args: ['--metrics-addr', '127.0.0.1:0', ...args] });
  running.push(d);
  return { d, tokens: join(dir, name, 'tokens') };
}

function takeAway(tokens: string): void {
  renameSync(tokens, `${tokens}.away`);
  away.push(tokens);
}

function giveBack(tokens: string): void {
  away.splice(away.indexOf(tokens), 1);
  renameSync(`${tokens}.away`, tokens);
}

const degradedCount = (d: DriverProcess) => states(d).filter((s) => s === 'degraded').length;

test('storage gone twice under load: results or retryable HSM_UNAVAILABLE only, /readyz follows, one key per keyId', { timeout: 180_000 }, async () => {
  const { d, tokens } = startOn('load');
  await d.waitForLog(stateIs('running'));
  const ledger = new Ledger(serverSink(server), { prefix: 'tok.', algorithms: [...WRAPPED_ALGORITHMS, 'eddsa-ed25519'], signsPerKey: 2, duplicateEvery: 4, retryCodes: ['HSM_UNAVAILABLE'] });
  const keys = feed(ledger, { keysPerSecond: 10, keys: 90 });
  try {
    for (const outage of [1, 2]) {
      await waitFor(`${outage * 25} jobs done`, () => ledger.completedCount() >= outage * 25, 60_000);
      takeAway(tokens);
      await waitFor(`degraded state #${outage}`, () => degradedCount(d) === outage, 30_000);
      const down = await readyz(d);
      expect(down.status).toBe(503);
      expect(down.text).toMatch(/^not ready: hsm: /);
      await sleep(1500);
      giveBack(tokens);
      await waitFor('/readyz to be 200 again', async () => (await readyz(d)).status === 200, 30_000);
    }
    await keys.fed;
    await waitFor('every job to end', async () => (await ledger.sync(), ledger.settled), 120_000);
    await keys.stop();
    await ledger.sync(true);
    const { problems, figures } = ledger.check();
    console.info(`token storage gone twice: ${JSON.stringify({ states: states(d), ...figures })}`);
    expect(problems).toEqual([]);
    expect(d.logs.filter((l: LogLine) => l.msg === 'part is down' && l.part === 'hsm').length).toBeGreaterThanOrEqual(2);
    expect(unseenLeases(server.jobs(), [d])).toEqual([]);
    expect((await d.stop()).code).toBe(0);
    const inside = lookInside(join(dir, 'load.db'));
    expect(inside.integrity).toEqual(['ok']);
    expect(rowsAgainstReports(inside.rows, ledger.reports())).toEqual([]);
  } finally {
    await keys.stop();
  }
});

test('one sign of each key kind during an outage and after it: HSM_UNAVAILABLE, then results again; never INTERNAL or KEY_INTEGRITY', { timeout: 120_000 }, async () => {
  // The default --health-interval (10 s): the jobs, not a background check, meet the outage first.
  const { d, tokens } = startOn('single', ['--health-interval', '10']);
  await d.waitForLog(stateIs('running'));
  const kinds = [
    { keyId: 'one.ed', algorithm: 'eddsa-ed25519', sign: { data: '5a5a', encoding: 'message' } },
    { keyId: 'one.p256', algorithm: 'ecdsa-p256', sign: { data: '5a5a', encoding: 'message', hash: 'sha256' } },
  ];
  for (const k of kinds) expect((await server.waitForCompletion(server.enqueue('keygen', { keyId: k.keyId, algorithm: k.algorithm }), 20_000)).result).toHaveProperty('publicKeyDer');
  const signOnce = async (k: (typeof kinds)[number]) => server.waitForCompletion(server.enqueue('sign', { keyId: k.keyId, ...k.sign }), 30_000);

  // Anything but a result or a retryable HSM_UNAVAILABLE, named with its message.
  const wrong: string[] = [];
  const note = (k: (typeof kinds)[number], when: string, job: JobView) => {
    const e = job.error as { code: string; message: string; retryable: boolean } | undefined;
    if (e && (e.code !== 'HSM_UNAVAILABLE' || !e.retryable)) wrong.push(`${k.keyId} ${when}: ${e.code}: ${e.message}`);
  };
  takeAway(tokens);
  for (const k of kinds) note(k, 'during the outage', await signOnce(k));
  giveBack(tokens);
  // Back: each sign ends in a result; until the driver has found the token again, only HSM_UNAVAILABLE is acceptable.
  for (const k of kinds) {
    await waitFor(`a result for ${k.keyId}`, async () => {
      const after = await signOnce(k);
      note(k, 'after it', after);
      return after.result !== undefined;
    }, 60_000);
  }
  expect(wrong).toEqual([]);
});
