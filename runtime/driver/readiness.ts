// The readiness gate: the driver takes jobs only while the HSM and the database answer. While
// either is down it stops polling (other drivers take the work), probes with backoff, and
// opens again by itself. A job failing with HSM_UNAVAILABLE or DATABASE_UNAVAILABLE closes it.
import type { Logger } from 'pino';
import { Backoff, sleep } from './backoff.js';
import { toWireError, type ErrorCode } from '../errors.js';

export type Part = 'hsm' | 'database';
export type Check = () => Promise<void>;

export class Readiness {
  private readonly down = new Map<Part, string>();
  private readonly backoff: Backoff;
  private closed = new AbortController();

  constructor(
    private readonly checks: Record<Part, Check>,
    private readonly log: Logger,
    backoffCapMs = 15_000,
  ) {
    this.backoff = new Backoff(250, backoffCapMs);
  }

  get ready(): boolean {
    return this.down.size === 0;
  }

  /** False until a probe has found every part usable: a fresh gate is open but not yet proven. */
  everReady = false;

  /** Aborts when the gate closes: the loop ends a pending long poll, so it leases nothing it cannot run. */
  get readySignal(): AbortSignal {
    if (this.closed.signal.aborted && this.ready) this.closed = new AbortController();
    return this.closed.signal;
  }

  /** Why the gate is closed, for logs and health. */
  get reasons(): Record<string, string> {
    return Object.fromEntries(this.down);
  }

  /** A job's failure says a part is down; close the gate until a probe says otherwise. */
  report(code: ErrorCode, message: string): void {
    if (code === 'HSM_UNAVAILABLE') this.markDown('hsm', message);
    if (code === 'DATABASE_UNAVAILABLE') this.markDown('database', message);
  }

  /** Runs every check once; returns true when all parts answer. */
  async probe(): Promise<boolean> {
    await Promise.all(
      (Object.keys(this.checks) as Part[]).map(async (part) => {
        try {
          await this.checks[part]();
          if (this.down.delete(part)) this.log.info({ part }, 'part is back');
        } catch (err) {
          this.markDown(part, toWireError(err).message);
        }
      }),
    );
    if (this.ready) this.everReady = true;
    return this.ready;
  }

  /** Probes with backoff until every part answers or the signal aborts. */
  async waitUntilReady(signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !(await this.probe())) await sleep(this.backoff.next(), signal);
    this.backoff.reset();
  }

  private markDown(part: Part, reason: string): void {
    if (this.down.get(part) !== reason) this.log.warn({ part, reason }, 'part is down');
    this.down.set(part, reason);
    this.closed.abort();
  }
}
