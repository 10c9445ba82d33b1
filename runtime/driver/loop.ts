// The poll loop, readable in one screen: wait until ready → reserve a slot → long-poll for a
// job → run it without waiting → repeat. API faults back off and never end the loop.
import type { Logger } from 'pino';
import { Backoff, sleep } from './backoff.js';
import type { JobApi, LeasedJob } from './job-api.js';
import type { Readiness } from './readiness.js';
import type { Semaphore } from './semaphore.js';

export type DriverState = 'starting' | 'running' | 'degraded' | 'draining' | 'stopped';

export interface LoopDeps {
  api: Pick<JobApi, 'next'>;
  readiness: Pick<Readiness, 'ready' | 'readySignal' | 'waitUntilReady'>;
  slots: Semaphore;
  runJob: (job: LeasedJob) => Promise<void>;
  setState: (state: DriverState) => void;
  log: Logger;
  pollWaitSeconds: number;
  backoffCapMs: number;
  /** Hears each poll's result: a job, none, or an error with its cause. */
  onPoll?: (result: 'job' | 'empty' | 'error', cause?: string) => void;
}

/** An HTTP status, or the network error's code (ECONNREFUSED, UND_ERR_…), as a metric label. */
function pollErrorCause(err: unknown): string {
  const e = err as { status?: number; code?: string };
  return e.status !== undefined ? String(e.status) : (e.code ?? 'other');
}

/** Returns when `stop` aborts; jobs already started keep running (the caller drains them). */
export async function pollLoop(deps: LoopDeps, stop: AbortSignal): Promise<void> {
  const backoff = new Backoff(250, deps.backoffCapMs);
  while (!stop.aborted) {
    if (!deps.readiness.ready) {
      deps.setState('degraded');
      await deps.readiness.waitUntilReady(stop);
      continue;
    }
    deps.setState('running');
    if (!(await deps.slots.acquire(stop))) break;
    let job: LeasedJob | null;
    try {
      job = await deps.api.next(deps.pollWaitSeconds, AbortSignal.any([stop, deps.readiness.readySignal]));
      backoff.reset();
    } catch (err) {
      deps.slots.release();
      if (stop.aborted) break;
      if (!deps.readiness.ready) continue; // the gate closed mid-poll: not an API fault
      deps.onPoll?.('error', pollErrorCause(err));
      const delayMs = backoff.next();
      deps.log.warn({ err: (err as Error).message, delayMs }, 'poll failed, backing off');
      await sleep(delayMs, stop);
      continue;
    }
    deps.onPoll?.(job ? 'job' : 'empty');
    if (!job) {
      deps.slots.release();
      continue;
    }
    // runJob answers every failure itself; should it still reject, the driver must not die of it.
    void deps.runJob(job)
      .catch((err: unknown) => deps.log.error({ err: (err as Error)?.message, jobId: job.id }, 'job runner failed'))
      .finally(() => deps.slots.release());
  }
}
