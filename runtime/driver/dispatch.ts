// Runs one leased job: find its handler, run it with a context, turn any failure into its wire
// error (once, here), post the answer, log the outcome. Never throws.
import type { Logger } from 'pino';
import { handlerFor } from '../../handlers/index.js';
import type { AuditFacts, DriverInfo, HsmPort } from '../context.js';
import { AUDITED_KINDS, auditEntryFor, type AuditTrail } from '../audit/trail.js';
import { toWireError, type WireError } from '../errors.js';
import type { Answer, JobApi, LeasedJob } from './job-api.js';
import type { DriverMetrics } from './metrics.js';
import type { Readiness } from './readiness.js';
import type { WrappedKeyStore } from '../store/store.js';

export interface DispatchDeps {
  api: Pick<JobApi, 'answer'>;
  hsm: HsmPort;
  store: WrappedKeyStore;
  readiness: Pick<Readiness, 'report'>;
  driver: DriverInfo;
  log: Logger;
  /** Secrets that must never reach an error message (the PIN). */
  redact: readonly string[];
  /** The driver's state, logged with each job's outcome. */
  state: () => string;
  metrics?: DriverMetrics;
  /** Off only when the operator turned the audit trail off (benchmarks). */
  audit?: AuditTrail;
}

export async function runJob(job: LeasedJob, deps: DispatchDeps): Promise<void> {
  const started = performance.now();
  const log = deps.log.child({ jobId: job.id, kind: typeof job.kind === 'string' ? job.kind.slice(0, 40) : typeof job.kind, attempt: job.attempt });
  // Handlers may stop early when the lease is gone: the answer would be refused anyway.
  const signal = AbortSignal.timeout(Math.max(0, job.leaseExpiresAt.getTime() - Date.now()));
  let answer: Answer;
  let error: WireError | undefined;
  const facts: AuditFacts = {};
  const audit = (more: AuditFacts) => void Object.assign(facts, more);
  try {
    const handler = handlerFor(job.kind);
    const output = await handler(job.input, { jobId: job.id, attempt: job.attempt, signal, log, hsm: deps.hsm, store: deps.store, driver: deps.driver, audit });
    answer = { output };
  } catch (err) {
    error = toWireError(err, deps.redact);
    if (error.code === 'INTERNAL') log.error({ err: describe(err, deps.redact) }, 'job failed with an internal error');
    deps.readiness.report(error.code, error.message);
    answer = { error };
  }
  if (deps.audit && AUDITED_KINDS.has(job.kind)) {
    // No answer leaves before its record is committed. Without the record the output is
    // withheld: the job fails retryably and its next attempt is recorded.
    try {
      await deps.audit.append(auditEntryFor({ ...job, kind: String(job.kind) }, facts, error?.code));
    } catch (err) {
      error = toWireError(err, deps.redact);
      if (error.code === 'INTERNAL') log.error({ err: describe(err, deps.redact) }, 'audit record failed with an internal error');
      error = { ...error, message: `audit record not committed: ${error.message}` };
      deps.readiness.report(error.code, error.message);
      answer = { error };
    }
  }
  let delivery: string;
  try {
    delivery = await deps.api.answer(job, answer);
  } catch (err) {
    delivery = `failed: ${(err as Error).message}`;
  }
  const seconds = (performance.now() - started) / 1000;
  const kindLabel = typeof job.kind === 'string' && ['keygen', 'sign', 'health'].includes(job.kind) ? job.kind : 'other';
  deps.metrics?.jobs.inc({ kind: kindLabel, outcome: error?.code ?? 'ok' });
  deps.metrics?.jobDuration.observe({ kind: kindLabel }, seconds);
  const durationMs = Math.round(seconds * 1000);
  const fields = { durationMs, outcome: error ? 'error' : 'output', code: error?.code, delivery, state: deps.state() };
  if (delivery === 'accepted') log.info(fields, 'job done');
  else log.warn(fields, 'job answer not delivered');
}

/** Name and first line of an unexpected error, for the log (never the wire). */
function describe(err: unknown, redact: readonly string[]): string {
  let text = err instanceof Error ? `${err.name}: ${err.message.split('\n')[0]}` : String(err);
  for (const secret of redact) if (secret) text = text.split(secret).join('[redacted]');
  return text.slice(0, 300);
}
