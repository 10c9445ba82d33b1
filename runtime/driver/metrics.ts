// The driver's Prometheus metrics (prom-client), in one registry: jobs by kind and outcome, job
// and HSM-call durations, polls and their errors, jobs in flight, state, sessions in use, key
// cache hits, keys stored, and the process's own metrics.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { DriverState } from './loop.js';

const STATES: readonly DriverState[] = ['starting', 'running', 'degraded', 'draining', 'stopped'];

/** What the driver reads on each scrape rather than counting as it goes. */
export interface MetricSources {
  sessionsInUse: () => number;
  keyCache: () => { hits: number; misses: number };
  keysStored: () => Promise<number>;
  /** Audit records committed, and how many of them unsealed (no integrity key on the token). */
  audit: () => { committed: number; unsealed: number };
  /** Signs that used a key row without a seal (accepted with a warning). */
  unsealedRowsAccepted: () => number;
}

export class DriverMetrics {
  readonly registry = new Registry();
  readonly jobs = new Counter({ name: 'hsm_driver_jobs_total', help: 'Jobs answered, by kind and outcome (ok or the protocol error code).', labelNames: ['kind', 'outcome'] as const, registers: [this.registry] });
  readonly jobDuration = new Histogram({
    name: 'hsm_driver_job_duration_seconds',
    help: 'From lease to answer posted, by kind.',
    labelNames: ['kind'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly hsmCallDuration = new Histogram({
    name: 'hsm_driver_hsm_call_duration_seconds',
    help: 'PKCS#11 calls that do the work of a job, by function.',
    labelNames: ['function'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10],
    registers: [this.registry],
  });
  readonly polls = new Counter({ name: 'hsm_driver_polls_total', help: 'Long polls of the job API, by result (job, empty, error).', labelNames: ['result'] as const, registers: [this.registry] });
  readonly pollErrors = new Counter({ name: 'hsm_driver_poll_errors_total', help: 'Failed polls, by cause (an HTTP status, or the network error code).', labelNames: ['cause'] as const, registers: [this.registry] });
  readonly inFlight = new Gauge({ name: 'hsm_driver_jobs_in_flight', help: 'Jobs leased and not yet answered.', registers: [this.registry] });
  private readonly state = new Gauge({ name: 'hsm_driver_state', help: 'The driver state: 1 for the current one.', labelNames: ['state'] as const, registers: [this.registry] });

  constructor(sources: MetricSources) {
    collectDefaultMetrics({ register: this.registry, prefix: 'hsm_driver_' });
    new Gauge({
      name: 'hsm_driver_sessions_in_use',
      help: 'PKCS#11 sessions running a call now.',
      registers: [this.registry],
      collect() {
        this.set(sources.sessionsInUse());
      },
    });
    new Gauge({
      name: 'hsm_driver_key_cache_signs',
      help: 'Signs with the key cache on, by result (hit: no unwrap; miss: unwrapped and kept).',
      labelNames: ['result'] as const,
      registers: [this.registry],
      collect() {
        const { hits, misses } = sources.keyCache();
        this.set({ result: 'hit' }, hits);
        this.set({ result: 'miss' }, misses);
      },
    });
    new Gauge({
      name: 'hsm_driver_keys_stored',
      help: 'Keys in the database (read at scrape time; absent while the database is down).',
      registers: [this.registry],
      async collect() {
        try {
          this.set(await sources.keysStored());
        } catch {
          this.reset();
        }
      },
    });
    new Gauge({
      name: 'hsm_driver_audit_records',
      help: 'Audit records this process committed, by whether the HSM sealed them (unsealed: the token has no integrity key).',
      labelNames: ['sealed'] as const,
      registers: [this.registry],
      collect() {
        const { committed, unsealed } = sources.audit();
        this.set({ sealed: 'yes' }, committed - unsealed);
        this.set({ sealed: 'no' }, unsealed);
      },
    });
    new Gauge({
      name: 'hsm_driver_unsealed_rows_accepted',
      help: 'Signs that used a key row written before row seals (accepted with a warning; run keys seal, then --require-sealed-rows).',
      registers: [this.registry],
      collect() {
        this.set(sources.unsealedRowsAccepted());
      },
    });
    this.setState('starting');
  }

  setState(current: DriverState): void {
    for (const s of STATES) this.state.set({ state: s }, s === current ? 1 : 0);
  }
}
