// kill -9 at random moments: hundreds of keygens and signs with 2-second leases while the driver
// is SIGKILLed again and again (always after it has logged in: see scripts/soak/kill-loop.ts) and
// restarted, alternating the bundle and the single binary. Every keyId must end with one key,
// every signature must verify against the key first reported, and the SQLite file must be whole.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { startJobServer } from '../../scripts/job-server.js';
import { killLoop } from '../../scripts/soak/kill-loop.js';
import { Ledger, serverSink, WRAPPED_ALGORITHMS } from '../../scripts/soak/ledger.js';
import { makePki, serverTls } from '../scripts/helpers.js';
import { spawnDriver, type DriverTarget } from '../support/driver.js';
import { killable, lookInside, ownToken, rowsAgainstReports, seededRandom } from '../support/faults.js';

const dir = mkdtempSync(join(tmpdir(), 'fault-kill-'));
const pki = makePki('driver');
afterAll(() => {
  pki.remove();
  rmSync(dir, { recursive: true, force: true });
});

test('SIGKILL after login, over and over: one key per keyId, signatures verify, the key file is whole', { timeout: 240_000 }, async () => {
  // Wrapped algorithms only: a kill during a resident (Ed25519) keygen would cut SoftHSM's own
  // token-object write short, which tests SoftHSM's file store, not the driver.
  const token = ownToken(join(dir, 'token'), 'hsm-driver-kill');
  const sqlitePath = join(dir, 'keys.db');
  const server = await startJobServer({ ...serverTls(pki), leaseSeconds: 2 });
  const random = seededRandom('kill');
  const ledger = new Ledger(serverSink(server), { prefix: 'kill.', algorithms: WRAPPED_ALGORITHMS, signsPerKey: 2, duplicateEvery: 4 });
  try {
    const outcome = await killLoop({
      ledger,
      random,
      start: (life) => {
        const target: DriverTarget = life % 2 === 0 ? 'bundle' : 'binary';
        return killable(spawnDriver({ target, pki, proxyAddr: server.proxyAddr, sqlitePath, env: { ...token, LOG_LEVEL: 'info' } }));
      },
      killAfterMs: [100, 1500],
      keysPerSecond: 8,
      keys: 200,
      minKills: 20,
      holdsLease: () => server.stats().jobs.leased > 0,
      drainTimeoutMs: 120_000,
    });
    const { problems, figures } = ledger.check();
    console.info(`kill: ${JSON.stringify({ ...outcome, startMs: undefined, lifeMs: undefined, ...figures })}`);

    expect(outcome.crashes).toEqual([]);
    expect(outcome.settled).toBe(true);
    expect(outcome.finalExit).toBe(0);
    expect(problems).toEqual([]);
    expect(outcome.kills).toBeGreaterThanOrEqual(20);
    expect(figures.keys).toBe(200);
    expect(figures.signaturesVerified).toBeGreaterThanOrEqual(400);
    // The kills did cut work short: jobs a killed driver held were handed out again.
    expect(outcome.killsWithLeases).toBeGreaterThan(0);
    expect(figures.redelivered).toBeGreaterThan(0);

    const inside = lookInside(sqlitePath);
    expect(inside.integrity).toEqual(['ok']);
    expect(inside.rows).toHaveLength(200);
    expect(rowsAgainstReports(inside.rows, ledger.reports())).toEqual([]);
  } finally {
    await server.close();
  }
});
