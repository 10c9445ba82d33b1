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

/**
 * A closing gate ends the pending long poll, but never one younger than this. The server answers
 * at once when it has a job waiting, and a poll given up after the server leased it a job loses
 * that job until the lease expires (the protocol cannot hand a lease back): that happened to
 * every job or two while a full disk failed keygens one after another. A poll still pending
 * after this long is one the server is holding for lack of work, and ending it loses nothing.
 */
const GATE_ABORT_AFTER_MS = 1000;

/** Aborts when `stop` does, and when `gate` does, but not before GATE_ABORT_AFTER_MS from now. */
function pollSignal(stop: AbortSignal, gate: AbortSignal): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const startedAt = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const onStop = () => controller.abort(stop.reason);
  const onGate = () => {
    const wait = startedAt + GATE_ABORT_AFTER_MS - Date.now();
    if (wait <= 0) controller.abort(gate.reason);
    else timer = setTimeout(() => controller.abort(gate.reason), wait);
  };
  stop.addEventListener('abort', onStop, { once: true });
  gate.addEventListener('abort', onGate, { once: true });
  if (stop.aborted) onStop();
  else if (gate.aborted) onGate();
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
      gate.removeEventListener('abort', onGate);
    },
  };
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
    const poll = pollSignal(stop, deps.readiness.readySignal);
    try {
      job = await deps.api.next(deps.pollWaitSeconds, poll.signal);
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
    } finally {
      poll.done();
    }
    deps.onPoll?.(job ? 'job' : 'empty');
    if (!job) {
      deps.slots.release();
      continue;
    }
    // Run it even if the gate closed meanwhile: it is leased to us, and an answer comes sooner
    // than a lease expiry. runJob answers every failure itself; should it still reject, the
    // driver must not die of it.
    void deps.runJob(job)
      .catch((err: unknown) => deps.log.error({ err: (err as Error)?.message, jobId: job.id }, 'job runner failed'))
      .finally(() => deps.slots.release());
  }
}
