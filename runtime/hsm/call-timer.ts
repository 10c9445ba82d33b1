// Times the PKCS#11 calls that do a job's work and tells whoever listens (the driver's metrics).
export type CallObserver = (fn: string, seconds: number) => void;

export class CallTimer {
  private observer: CallObserver = () => {};

  observe(observer: CallObserver): void {
    this.observer = observer;
  }

  async time<T>(fn: string, call: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await call();
    } finally {
      this.observer(fn, (performance.now() - started) / 1000);
    }
  }
}
