// A log file that rotates by size (NAME.log → NAME.log.1 … NAME.log.N), for a service with no
// terminal and no journal: the Windows service writes here. Synchronous appends, like the
// stderr destination, so a line is on disk before the job it describes is answered.
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { DestinationStream } from 'pino';

export interface RotatingFileOptions {
  /** Rotate when the file would pass this many bytes. */
  maxBytes?: number;
  /** Rotated files kept beside the live one. */
  keep?: number;
}

export class RotatingFile implements DestinationStream {
  private fd: number;
  private size: number;
  private readonly maxBytes: number;
  private readonly keep: number;

  constructor(
    readonly path: string,
    { maxBytes = 10 * 1024 * 1024, keep = 5 }: RotatingFileOptions = {},
  ) {
    this.maxBytes = maxBytes;
    this.keep = keep;
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, 'a', 0o640);
    this.size = fstatSync(this.fd).size;
  }

  write(line: string): void {
    const bytes = Buffer.byteLength(line);
    if (this.size > 0 && this.size + bytes > this.maxBytes) this.rotate();
    writeSync(this.fd, line);
    this.size += bytes;
  }

  close(): void {
    closeSync(this.fd);
  }

  private rotate(): void {
    closeSync(this.fd);
    rmSync(`${this.path}.${this.keep}`, { force: true });
    for (let n = this.keep - 1; n >= 1; n--) {
      try {
        renameSync(`${this.path}.${n}`, `${this.path}.${n + 1}`);
      } catch {
        /* that generation does not exist yet */
      }
    }
    renameSync(this.path, `${this.path}.1`);
    this.fd = openSync(this.path, 'a', 0o640);
    this.size = 0;
  }
}
