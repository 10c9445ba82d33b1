// Exponential backoff with full jitter and a cap, for polls and answers that failed.

export class Backoff {
  private failures = 0;
  constructor(
    private readonly baseMs = 250,
    private readonly capMs = 15_000,
  ) {}

  reset(): void {
    this.failures = 0;
  }

  /** The next delay: a random time up to min(cap, base·2^failures). */
  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures, 20));
    this.failures++;
    return Math.round(Math.random() * ceiling);
  }
}

/** Sleeps ms, ending early (without throwing) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
