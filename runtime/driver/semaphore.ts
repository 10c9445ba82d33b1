// A counting semaphore: the poll loop reserves a slot before it asks for a job, so it never
// leases more jobs than it can run at once.

export class Semaphore {
  private readonly waiters: Array<() => void> = [];
  constructor(private available: number) {}

  /** Resolves true with a slot, or false if the signal aborted first. */
  acquire(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.available > 0) {
      this.available--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const grant = () => {
        signal.removeEventListener('abort', cancel);
        resolve(true);
      };
      const cancel = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve(false);
      };
      this.waiters.push(grant);
      signal.addEventListener('abort', cancel, { once: true });
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
  }
}
