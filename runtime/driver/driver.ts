// `hsm-driver run`: wires configuration, HSM, store, job API, readiness gate and poll loop;
// then, when told to stop, drains running jobs and closes everything. Returns the exit code.
import type { Logger } from 'pino';
import { auditTrailOn, resolveHsmConfig, resolveRunConfig, resolveStoreOptions, type Settings } from '../config.js';
import { AuditTrail } from '../audit/trail.js';
import { runJob } from './dispatch.js';
import { Hsm } from '../hsm/hsm.js';
import { HsmError } from '../errors.js';
import { JobApi, type LeasedJob } from './job-api.js';
import { pollLoop, type DriverState } from './loop.js';
import { Readiness } from './readiness.js';
import { DriverMetrics } from './metrics.js';
import { startProbes } from './probes.js';
import { Semaphore } from './semaphore.js';
import { ReopeningStore } from '../store/reopening.js';
import { loadClientTls } from './tls.js';
import { sleep } from './backoff.js';
import { VERSION } from '../version.js';

/** `onState` hears every state change (the Windows service reports them to the SCM). */
export async function runDriver(
  settings: Settings,
  env: NodeJS.ProcessEnv,
  log: Logger,
  stop: AbortSignal,
  onState: (state: DriverState) => void = () => {},
): Promise<number> {
  const startedAt = performance.now();
  let state: DriverState = 'starting';
  let onStateChange = (_next: DriverState) => {};
  const setState = (next: DriverState) => {
    if (next === state) return;
    log.info({ state: next, previous: state }, 'driver state');
    state = next;
    onStateChange(next);
    onState(next);
  };
  log.info({ state, version: VERSION }, 'driver state');

  // Configuration problems end the process now, with one line; the rest is retried forever.
  const hsmConfig = resolveHsmConfig(settings, env);
  const run = resolveRunConfig(settings, hsmConfig.sessions);
  const tls = loadClientTls(run);
  const auditOn = auditTrailOn(settings);
  const api = new JobApi(run.proxyAddr, tls, VERSION, log);
  const hsm = await Hsm.start(hsmConfig, log);
  const store = await ReopeningStore.start(resolveStoreOptions(settings, env), log).catch(async (err: unknown) => {
    await hsm.close();
    throw err;
  });

  const readiness = new Readiness(
    {
      hsm: async () => {
        const health = await hsm.health();
        if (!health.ok) throw new HsmError('HSM_UNAVAILABLE', health.error ?? 'hsm not ok', -1, 'health');
        await hsm.checkMasterKeyPresent();
      },
      database: () => store.ping(),
    },
    log,
    // While degraded, parts are probed at least once a health interval: ready again within one.
    Math.min(run.backoffCapMs, run.healthIntervalMs),
  );
  const identity = { subject: tls.leaf.subject.replace(/\n/g, ', '), fingerprint: tls.leaf.fingerprint256 };
  const audit = auditOn ? new AuditTrail(store.audit, hsm, identity, log) : undefined;
  if (audit) log.info({ chain: audit.chain, ...identity }, 'audit trail: this process appends to its own chain');
  else log.warn('audit trail is off (--audit-trail off): keygen and sign jobs leave no record');
  const metrics = new DriverMetrics({
    sessionsInUse: () => hsm.pool.inUse,
    keyCache: () => hsm.keyCacheStats,
    keysStored: () => store.countKeys(),
    audit: () => ({ committed: audit?.committed ?? 0, unsealed: audit?.unsealed ?? 0 }),
    unsealedRowsAccepted: () => hsm.rowSeals.unsealedAccepted,
  });
  metrics.setState(state);
  onStateChange = (next) => metrics.setState(next);
  hsm.calls.observe((fn, seconds) => metrics.hsmCallDuration.observe({ function: fn }, seconds));
  const probes = run.metricsAddr
    ? await startProbes(run.metricsAddr, {
        metrics,
        notReady: () =>
          !readiness.everReady ? 'no successful HSM and database check yet'
          : !readiness.ready ? Object.entries(readiness.reasons).map(([part, why]) => `${part}: ${why}`).join('; ')
          : state !== 'running' ? `driver is ${state}`
          : undefined,
      }).catch(async (err: unknown) => {
        await Promise.allSettled([hsm.close(), store.close()]);
        throw err;
      })
    : undefined;
  if (probes) log.info({ address: probes.address }, 'serving /metrics, /livez and /readyz');

  const deps = { api, hsm, store, readiness, driver: { version: VERSION, startedAt }, log, redact: [hsmConfig.pin], state: () => state, metrics, audit };
  const inFlight = new Set<Promise<void>>();
  const track = (job: LeasedJob) => {
    const p = runJob(job, deps);
    inFlight.add(p);
    metrics.inFlight.set(inFlight.size);
    return p.finally(() => {
      inFlight.delete(p);
      metrics.inFlight.set(inFlight.size);
    });
  };

  // A token or database that dies while the driver is idle is noticed without a job failing.
  const background = setInterval(() => void (readiness.ready && readiness.probe()), run.healthIntervalMs);
  try {
    if (await readiness.probe()) await hsm.allModes().catch(() => undefined); // probe algorithms up front
    await pollLoop(
      {
        api, readiness, slots: new Semaphore(run.concurrency), runJob: track, setState, log, pollWaitSeconds: run.pollWaitSeconds, backoffCapMs: run.backoffCapMs,
        onPoll: (result, cause) => {
          metrics.polls.inc({ result });
          if (cause) metrics.pollErrors.inc({ cause });
        },
      },
      stop,
    );
  } finally {
    clearInterval(background);
  }

  setState('draining');
  const drainTimer = new AbortController(); // so the timer does not hold the process open after a drain
  const drained = await Promise.race([Promise.allSettled([...inFlight]).then(() => true), sleep(run.drainTimeoutMs, drainTimer.signal).then(() => false)]);
  drainTimer.abort();
  if (!drained) log.error({ jobs: inFlight.size }, 'drain timeout: running jobs are left to lease expiry');
  await api.close();
  if (drained) await Promise.allSettled([hsm.close(), store.close()]);
  setState('stopped');
  await probes?.close();
  return drained ? 0 : 1;
}
