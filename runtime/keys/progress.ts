// Progress of the long `keys` commands: a bar with rate and ETA (cli-progress) when stderr is a
// terminal, otherwise one JSON log line per batch, so a job runner's log shows how far it got.
import { Presets, SingleBar } from 'cli-progress';
import type { Logger } from 'pino';

export interface Progress {
  /** Begins the count; `total` is how many items the command expects to handle. */
  start(total: number): void;
  /** After each batch: items handled so far, and counts worth showing (failed, skipped, …). */
  update(done: number, counts?: Readonly<Record<string, number>>): void;
  /** Ends the bar (leaving its last state on screen); safe to call twice. */
  stop(): void;
}

/**
 * `terminal` is the stream to draw on (stderr when it is a TTY), or undefined for JSON lines
 * through `log`. `command` names the work in both forms, e.g. "keys verify".
 */
export function progressReporter(command: string, log: Logger, terminal?: NodeJS.WriteStream): Progress {
  return terminal ? new TerminalProgress(command, terminal) : new LogProgress(command, log);
}

/** Items per second since start, and seconds left at that rate (undefined until there is a rate). */
export function rateAndEta(done: number, total: number, elapsedMs: number): { ratePerSecond: number; etaSeconds: number | undefined } {
  const ratePerSecond = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  const etaSeconds = ratePerSecond > 0 ? Math.max(0, Math.round((total - done) / ratePerSecond)) : undefined;
  return { ratePerSecond: Math.round(ratePerSecond * 10) / 10, etaSeconds };
}

class LogProgress implements Progress {
  private started = 0;
  private total = 0;

  constructor(
    private readonly command: string,
    private readonly log: Logger,
  ) {}

  start(total: number): void {
    this.started = performance.now();
    this.total = total;
    this.log.info({ command: this.command, done: 0, total }, 'progress');
  }

  update(done: number, counts: Readonly<Record<string, number>> = {}): void {
    const { ratePerSecond, etaSeconds } = rateAndEta(done, this.total, performance.now() - this.started);
    this.log.info({ command: this.command, done, total: this.total, ratePerSecond, etaSeconds, ...counts }, 'progress');
  }

  stop(): void {}
}

class TerminalProgress implements Progress {
  private readonly bar: SingleBar;
  private started = 0;
  private total = 0;
  private running = false;

  constructor(
    private readonly command: string,
    stream: NodeJS.WriteStream,
  ) {
    this.bar = new SingleBar(
      {
        stream,
        format: '{command} [{bar}] {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}{counts}',
        hideCursor: true,
        etaBuffer: 20,
        fps: 5,
      },
      Presets.shades_classic,
    );
  }

  start(total: number): void {
    this.started = performance.now();
    this.total = total;
    this.running = true;
    this.bar.start(total, 0, { command: this.command, rate: '0', counts: '' });
  }

  update(done: number, counts: Readonly<Record<string, number>> = {}): void {
    const { ratePerSecond } = rateAndEta(done, this.total, performance.now() - this.started);
    const shown = Object.entries(counts).filter(([, n]) => n > 0).map(([name, n]) => `${n} ${name}`);
    this.bar.update(done, { rate: String(Math.round(ratePerSecond)), counts: shown.length ? ` | ${shown.join(', ')}` : '' });
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.bar.stop();
  }
}
